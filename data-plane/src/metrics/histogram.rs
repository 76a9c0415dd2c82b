//! A lock-free latency histogram with fixed log-linear buckets (15 per
//! decade, 10 µs to 100 s), cheap enough for every request: one binary
//! search over a static table and four relaxed atomic updates. The bucket
//! layout is the wire layout of `proto::Histogram`, so reports carry the
//! full state and the control plane can merge nodes exactly.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use switchyard_shared::proto;

/// Mantissas of one decade; every 1-2.5-5 step is among them so the
/// Prometheus buckets below are exact unions of ours.
const MANTISSAS: [u64; 15] = [
    100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900,
];
/// Decades covered: 10 µs .. 100 s.
const DECADES: usize = 7;
/// Upper bounds (inclusive) of the buckets, in microseconds.
pub const BOUNDS_US: [u64; MANTISSAS.len() * DECADES + 1] = bounds();
/// Buckets: one per bound plus the overflow bucket.
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Bucket bounds published on Prometheus `/metrics` (seconds as µs): a
/// 1-2.5-5 ladder from 100 µs to 60 s, each one of [`BOUNDS_US`].
pub const PROMETHEUS_BOUNDS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 60_000_000,
];

const fn bounds() -> [u64; MANTISSAS.len() * DECADES + 1] {
    let mut out = [0u64; MANTISSAS.len() * DECADES + 1];
    // Mantissa 100 at scale 1 is 10 µs.
    let mut scale = 1u64;
    let mut d = 0;
    while d < DECADES {
        let mut m = 0;
        while m < MANTISSAS.len() {
            out[d * MANTISSAS.len() + m] = MANTISSAS[m] * scale / 10;
            m += 1;
        }
        scale *= 10;
        d += 1;
    }
    out[MANTISSAS.len() * DECADES] = 10 * scale;
    out
}

/// Cumulative latency distribution.
#[derive(Debug)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last is the overflow.
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = BOUNDS_US.partition_point(|&b| b < us);
        self.counts[index].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// A point-in-time copy (fields are read one by one, so a concurrent
    /// record may be half-visible; the next read includes it fully).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_us: self.sum_us.load(Relaxed),
            count: self.count.load(Relaxed),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// Plain values of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
    pub max_us: u64,
}

impl HistogramSnapshot {
    /// The wire form: `counts[i]` observations in `(bounds[i-1], bounds[i]]`,
    /// the last count above the last bound.
    pub fn to_proto(&self) -> proto::Histogram {
        proto::Histogram {
            bounds_us: BOUNDS_US.to_vec(),
            counts: self.counts.clone(),
            sum_us: self.sum_us,
            count: self.count,
            max_us: self.max_us,
        }
    }

    /// Observations `<= bound_us` (exact when `bound_us` is one of ours).
    pub fn cumulative_at(&self, bound_us: u64) -> u64 {
        let end = BOUNDS_US.partition_point(|&b| b <= bound_us);
        self.counts.iter().take(end).sum()
    }

    /// The `q` quantile (0..=1) in microseconds, interpolated inside its
    /// bucket and never above the observed maximum; `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        quantile(&BOUNDS_US, &self.counts, self.max_us, q)
    }
}

/// The `q` quantile of per-bucket `counts` over `bounds` (one more count
/// than bounds), interpolated linearly inside the bucket and capped at
/// `max`. Shared with the control plane's merge of reports.
pub fn quantile(bounds: &[u64], counts: &[u64], max: u64, q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if (seen + c) as f64 >= rank {
            let lower = if i == 0 { 0 } else { bounds[i - 1] } as f64;
            let upper = bounds.get(i).map_or(max as f64, |&b| b as f64);
            let within = (rank - seen as f64) / c as f64;
            let value = lower + (upper - lower) * within;
            return Some(value.min(max as f64));
        }
        seen += c;
    }
    Some(max as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_strictly_increasing_and_cover_10us_to_100s() {
        assert_eq!(BOUNDS_US[0], 10);
        assert_eq!(*BOUNDS_US.last().unwrap_or(&0), 100_000_000);
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
        for b in PROMETHEUS_BOUNDS_US {
            assert!(BOUNDS_US.contains(&b), "{b} is not a bucket bound");
        }
    }

    #[test]
    fn records_land_in_the_right_bucket_and_quantiles_stay_close() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.max_us, 100_000);
        assert_eq!(s.sum_us, (1..=100u64).sum::<u64>() * 1000);
        // Exactly at a bound counts as <= that bound.
        assert_eq!(s.cumulative_at(1_000), 1);
        assert_eq!(s.cumulative_at(10_000), 10);
        assert_eq!(s.cumulative_at(100_000), 100);
        let p50 = s.quantile_us(0.5).unwrap_or(0.0);
        let p99 = s.quantile_us(0.99).unwrap_or(0.0);
        assert!((40_000.0..=60_000.0).contains(&p50), "p50 {p50}");
        assert!((90_000.0..=100_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(s.quantile_us(1.0), Some(100_000.0));
    }

    #[test]
    fn overflow_and_empty() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile_us(0.5), None);
        h.record(Duration::from_secs(500));
        let s = h.snapshot();
        assert_eq!(s.counts.last(), Some(&1));
        assert_eq!(s.quantile_us(0.5), Some(500_000_000.0));
        let p = s.to_proto();
        assert_eq!(p.counts.len(), p.bounds_us.len() + 1);
    }
}
