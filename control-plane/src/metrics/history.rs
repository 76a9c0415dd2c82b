//! In-memory time series of the fleet and of every rule: one point per
//! report interval for the last hour, then one point per minute for a day.
//! Memory is fixed per series (see [`Series::MEMORY_BYTES`]) and the number
//! of rule series is capped, so the store is bounded whatever the traffic.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::aggregate::FleetSnapshot;
use super::totals::{Hist, Totals};

/// Points at the report interval (one hour at 5 s).
pub const FINE_POINTS: usize = 720;
/// One-minute points (one day).
pub const COARSE_POINTS: usize = 1440;
pub const COARSE_STEP: Duration = Duration::from_secs(60);
/// Rules tracked; later ones are left out of history (still in totals).
pub const MAX_RULE_SERIES: usize = 1000;

/// The figures of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// End of the interval, unix ms.
    pub t_ms: u64,
    /// Length of the interval.
    pub span_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub latency_sum_us: u64,
    pub latency_count: u64,
    /// Interval percentiles (µs); coarse points keep the highest of the
    /// fine points they cover.
    pub p50_us: Option<f32>,
    pub p95_us: Option<f32>,
    pub p99_us: Option<f32>,
    /// Fleet only: live connections at the end (coarse: the peak).
    pub active_connections: u64,
    /// Fleet only.
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl Point {
    fn merge(&mut self, p: &Point) {
        self.t_ms = p.t_ms;
        self.span_ms += p.span_ms;
        self.requests += p.requests;
        self.errors += p.errors;
        self.latency_sum_us += p.latency_sum_us;
        self.latency_count += p.latency_count;
        self.p50_us = max_opt(self.p50_us, p.p50_us);
        self.p95_us = max_opt(self.p95_us, p.p95_us);
        self.p99_us = max_opt(self.p99_us, p.p99_us);
        self.active_connections = self.active_connections.max(p.active_connections);
        self.cache_hits += p.cache_hits;
        self.cache_misses += p.cache_misses;
    }
}

fn max_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Two resolutions of one figure set.
#[derive(Debug)]
pub struct Series {
    fine: VecDeque<Point>,
    coarse: VecDeque<Point>,
    /// The minute being filled.
    pending: Option<Point>,
}

impl Default for Series {
    /// Allocated once at full size, so memory never grows past
    /// [`Series::MEMORY_BYTES`].
    fn default() -> Self {
        Self {
            fine: VecDeque::with_capacity(FINE_POINTS),
            coarse: VecDeque::with_capacity(COARSE_POINTS),
            pending: None,
        }
    }
}

impl Series {
    /// One series' memory: about 207 KB (96-byte points), so the fleet
    /// plus 100 rules take about 21 MB whatever the number of nodes (nodes
    /// are merged per rule), and [`MAX_RULE_SERIES`] caps the worst case.
    pub const MEMORY_BYTES: usize =
        (FINE_POINTS + COARSE_POINTS + 1) * std::mem::size_of::<Point>();

    pub fn push(&mut self, p: Point) {
        if self.fine.len() == FINE_POINTS {
            self.fine.pop_front();
        }
        self.fine.push_back(p);
        let pending = self.pending.get_or_insert(Point {
            span_ms: 0,
            ..Point::default()
        });
        pending.merge(&p);
        if pending.span_ms >= COARSE_STEP.as_millis() as u64 {
            if self.coarse.len() == COARSE_POINTS {
                self.coarse.pop_front();
            }
            self.coarse.push_back(*pending);
            self.pending = None;
        }
    }

    /// The most recent point.
    pub fn last(&self) -> Option<Point> {
        self.fine.back().copied()
    }

    /// The points ending within `window` of `now_ms`, from the fine
    /// series when it covers the window, else from the coarse one.
    pub fn query(&self, window: Duration, now_ms: u64) -> (Vec<Point>, Resolution) {
        let since = now_ms.saturating_sub(window.as_millis() as u64);
        let fine_covers =
            self.fine.len() < FINE_POINTS || self.fine.front().is_some_and(|p| p.t_ms <= since);
        if fine_covers {
            let pts = self
                .fine
                .iter()
                .filter(|p| p.t_ms > since)
                .copied()
                .collect();
            (pts, Resolution::Fine)
        } else {
            let mut pts: Vec<Point> = self
                .coarse
                .iter()
                .filter(|p| p.t_ms > since)
                .copied()
                .collect();
            pts.extend(self.pending.filter(|p| p.t_ms > since));
            (pts, Resolution::Coarse)
        }
    }
}

// The stated bound holds (checked at compile time).
const _: () = assert!(Series::MEMORY_BYTES <= 210_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The report interval.
    Fine,
    /// [`COARSE_STEP`].
    Coarse,
}

/// The fleet series and one per rule, fed once per interval.
#[derive(Debug, Default)]
pub struct History {
    pub fleet: Series,
    pub rules: BTreeMap<String, Series>,
    previous: Option<(u64, Totals)>,
}

impl History {
    /// Records the interval since the previous call.
    pub fn record(&mut self, fleet: &FleetSnapshot) {
        let span_ms = self
            .previous
            .as_ref()
            .map_or(0, |(t, _)| fleet.at_ms.saturating_sub(*t));
        let empty = Totals::default();
        let prev = self.previous.as_ref().map_or(&empty, |(_, t)| t);

        let (hits, misses) = fleet.totals.cache_hits_misses();
        let (prev_hits, prev_misses) = prev.cache_hits_misses();
        let mut point = interval_point(
            fleet.at_ms,
            span_ms,
            fleet.totals.requests().saturating_sub(prev.requests()),
            fleet.totals.errors().saturating_sub(prev.errors()),
            &fleet.totals.latency().since(&prev.latency()),
        );
        point.active_connections = fleet.active_connections;
        point.cache_hits = hits.saturating_sub(prev_hits);
        point.cache_misses = misses.saturating_sub(prev_misses);
        self.fleet.push(point);

        for (name, rule) in &fleet.totals.rules {
            if !self.rules.contains_key(name) && self.rules.len() >= MAX_RULE_SERIES {
                continue;
            }
            let before = prev.rules.get(name);
            let latency = match before {
                Some(b) => rule.latency.since(&b.latency),
                None => rule.latency.clone(),
            };
            let p = interval_point(
                fleet.at_ms,
                span_ms,
                rule.requests
                    .saturating_sub(before.map_or(0, |b| b.requests)),
                rule.errors.saturating_sub(before.map_or(0, |b| b.errors)),
                &latency,
            );
            self.rules.entry(name.clone()).or_default().push(p);
        }
        self.previous = Some((fleet.at_ms, fleet.totals.clone()));
    }
}

fn interval_point(t_ms: u64, span_ms: u64, requests: u64, errors: u64, latency: &Hist) -> Point {
    Point {
        t_ms,
        span_ms,
        requests,
        errors,
        latency_sum_us: latency.sum_us,
        latency_count: latency.count,
        p50_us: latency.quantile_us(0.50).map(|v| v as f32),
        p95_us: latency.quantile_us(0.95).map(|v| v as f32),
        p99_us: latency.quantile_us(0.99).map(|v| v as f32),
        ..Point::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::totals::RuleTotals;

    fn fleet_at(t_ms: u64, requests: u64) -> FleetSnapshot {
        let mut f = FleetSnapshot {
            at_ms: t_ms,
            ..FleetSnapshot::default()
        };
        f.totals.rules.insert(
            "api".to_owned(),
            RuleTotals {
                requests,
                ..RuleTotals::default()
            },
        );
        f
    }

    #[test]
    fn points_are_interval_deltas_and_the_store_stays_bounded() {
        let mut h = History::default();
        let step = 5_000;
        // Two hours of ticks, 7 requests per tick.
        let ticks = 2 * 720;
        for i in 1..=ticks {
            h.record(&fleet_at(i * step, i * 7));
        }
        let now = ticks * step;
        let (fine, res) = h.fleet.query(Duration::from_secs(60), now);
        assert_eq!(res, Resolution::Fine);
        assert_eq!(fine.len(), 12);
        assert!(fine.iter().all(|p| p.requests == 7 && p.span_ms == step));
        assert_eq!(h.fleet.fine.len(), FINE_POINTS);
        // Two hours back is beyond the fine series: minutes instead.
        let (coarse, res) = h.rules["api"].query(Duration::from_secs(2 * 3600), now);
        assert_eq!(res, Resolution::Coarse);
        assert!(
            coarse.len() >= 119 && coarse.len() <= 121,
            "{}",
            coarse.len()
        );
        // Whole minutes in between; the first covers the very first tick
        // too and the last is the minute still being filled.
        let whole = &coarse[1..coarse.len() - 1];
        assert!(whole
            .iter()
            .all(|p| p.requests == 7 * 12 && p.span_ms == 60_000));
        assert!(coarse.last().is_some_and(|p| p.requests < 7 * 12));
    }
}
