//! Cumulative counters as the control plane keeps them: per rule, per
//! upstream server and per cache source, with latency histograms that merge
//! exactly across nodes (same bucket layout) and approximately otherwise.

use std::collections::BTreeMap;

use switchyard_shared::proto;

/// A latency histogram: per-bucket counts over `bounds_us`, plus overflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    pub bounds_us: Vec<u64>,
    /// One more than `bounds_us` (the overflow bucket).
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
    pub max_us: u64,
}

impl Hist {
    pub fn from_proto(h: &proto::Histogram) -> Self {
        let mut counts = h.counts.clone();
        // A malformed report must not break merges: pad or trim.
        counts.resize(h.bounds_us.len() + 1, 0);
        Self {
            bounds_us: h.bounds_us.clone(),
            counts,
            sum_us: h.sum_us,
            count: h.count,
            max_us: h.max_us,
        }
    }

    /// Adds `other`; buckets of a different layout go to the first of ours
    /// whose bound covers theirs.
    pub fn add(&mut self, other: &Hist) {
        if other.count == 0 && other.counts.iter().all(|c| *c == 0) {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        if self.bounds_us == other.bounds_us {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a += b;
            }
        } else {
            for (i, c) in other.counts.iter().enumerate() {
                let upper = other.bounds_us.get(i).copied().unwrap_or(u64::MAX);
                let j = self.bounds_us.partition_point(|&b| b < upper);
                if let Some(slot) = self.counts.get_mut(j) {
                    *slot += c;
                }
            }
        }
        self.sum_us += other.sum_us;
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// `self - earlier` per bucket (saturating): the observations between
    /// two cumulative readings. The max is the later reading's.
    pub fn since(&self, earlier: &Hist) -> Hist {
        if earlier.counts.len() != self.counts.len() || earlier.bounds_us != self.bounds_us {
            return self.clone();
        }
        Hist {
            bounds_us: self.bounds_us.clone(),
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            count: self.count.saturating_sub(earlier.count),
            max_us: self.max_us,
        }
    }

    /// Observations `<= bound_us` (exact when it is one of the bounds).
    pub fn cumulative_at(&self, bound_us: u64) -> u64 {
        let end = self.bounds_us.partition_point(|&b| b <= bound_us);
        self.counts.iter().take(end).sum()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile in microseconds, interpolated in its bucket and
    /// capped at the maximum; `None` without observations.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0 } else { self.bounds_us[i - 1] } as f64;
                let upper = self
                    .bounds_us
                    .get(i)
                    .map_or(self.max_us as f64, |&b| b as f64);
                let value = lower + (upper - lower) * ((rank - seen as f64) / c as f64);
                return Some(value.min(self.max_us as f64));
            }
            seen += c;
        }
        Some(self.max_us as f64)
    }

    /// Mean in microseconds; `None` without observations.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleTotals {
    pub requests: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub status_counts: BTreeMap<u32, u64>,
    pub latency: Hist,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTotals {
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
    pub latency: Hist,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTotals {
    pub hits: u64,
    pub misses: u64,
    pub stale_served: u64,
    pub fetch_errors: u64,
}

/// Everything cumulative a node (or the fleet) has counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub rules: BTreeMap<String, RuleTotals>,
    /// By (backend, server).
    pub servers: BTreeMap<(String, String), ServerTotals>,
    pub caches: BTreeMap<String, CacheTotals>,
    pub cpu_seconds: f64,
}

impl Totals {
    pub fn from_report(r: &proto::MetricsReport) -> Self {
        let mut t = Totals {
            cpu_seconds: r.cpu_seconds,
            ..Totals::default()
        };
        for rule in &r.rules {
            let e = t.rules.entry(rule.rule.clone()).or_default();
            e.requests += rule.requests;
            e.errors += rule.errors;
            e.fallbacks += rule.fallbacks;
            e.bytes_in += rule.bytes_in;
            e.bytes_out += rule.bytes_out;
            for (code, n) in &rule.status_counts {
                *e.status_counts.entry(*code).or_default() += n;
            }
            if let Some(h) = &rule.latency {
                e.latency.add(&Hist::from_proto(h));
            }
        }
        for s in &r.servers {
            let e = t
                .servers
                .entry((s.backend.clone(), s.server.clone()))
                .or_default();
            e.requests += s.requests;
            e.errors += s.errors;
            e.retries += s.retries;
            if let Some(h) = &s.latency {
                e.latency.add(&Hist::from_proto(h));
            }
        }
        for c in &r.caches {
            let e = t.caches.entry(c.source.clone()).or_default();
            e.hits += c.hits;
            e.misses += c.misses;
            e.stale_served += c.stale_served;
            e.fetch_errors += c.fetch_errors;
        }
        t
    }

    pub fn add(&mut self, other: &Totals) {
        // Adding to nothing (each snapshot starts so) is a copy: cloning
        // the maps whole is several times cheaper than thousands of inserts.
        if self.is_empty() {
            self.clone_from(other);
            return;
        }
        for (name, r) in &other.rules {
            let e = self.rules.entry(name.clone()).or_default();
            e.requests += r.requests;
            e.errors += r.errors;
            e.fallbacks += r.fallbacks;
            e.bytes_in += r.bytes_in;
            e.bytes_out += r.bytes_out;
            for (code, n) in &r.status_counts {
                *e.status_counts.entry(*code).or_default() += n;
            }
            e.latency.add(&r.latency);
        }
        for (key, s) in &other.servers {
            let e = self.servers.entry(key.clone()).or_default();
            e.requests += s.requests;
            e.errors += s.errors;
            e.retries += s.retries;
            e.latency.add(&s.latency);
        }
        for (name, c) in &other.caches {
            let e = self.caches.entry(name.clone()).or_default();
            e.hits += c.hits;
            e.misses += c.misses;
            e.stale_served += c.stale_served;
            e.fetch_errors += c.fetch_errors;
        }
        self.cpu_seconds += other.cpu_seconds;
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.servers.is_empty()
            && self.caches.is_empty()
            && self.cpu_seconds == 0.0
    }

    pub fn requests(&self) -> u64 {
        self.rules.values().map(|r| r.requests).sum()
    }

    pub fn errors(&self) -> u64 {
        self.rules.values().map(|r| r.errors).sum()
    }

    /// All rules' latency in one histogram.
    pub fn latency(&self) -> Hist {
        let mut h = Hist::default();
        for r in self.rules.values() {
            h.add(&r.latency);
        }
        h
    }

    pub fn cache_hits_misses(&self) -> (u64, u64) {
        self.caches
            .values()
            .fold((0, 0), |(h, m), c| (h + c.hits, m + c.misses))
    }
}
