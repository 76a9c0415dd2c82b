//! Cumulative traffic counters, shared by every snapshot version so numbers
//! survive reloads. Request handling only touches atomics; the registries
//! behind mutexes are used when a snapshot is built and when a report or a
//! scrape reads them.

pub mod families;
pub mod histogram;
pub mod process;
pub mod prometheus;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many distinct status codes a rule counts exactly; rarer codes are
/// still counted in their class.
const STATUS_SLOTS: usize = 8;

/// Off with `--no-request-metrics`: per-request rule and upstream
/// recording is skipped (a benchmark baseline for the cost of metrics).
/// Process-wide because a process runs one data plane.
static REQUEST_METRICS_OFF: AtomicBool = AtomicBool::new(false);

/// Turns per-request recording on or off for this process.
pub fn set_request_metrics(on: bool) {
    REQUEST_METRICS_OFF.store(!on, Relaxed);
}

/// Whether requests are recorded (one relaxed load on the request path).
#[inline]
pub fn request_metrics_on() -> bool {
    !REQUEST_METRICS_OFF.load(Relaxed)
}

/// All counters of one data plane process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client connections currently open on the proxy listeners.
    pub active_connections: AtomicU64,
    /// Requests no rule matched (answered 404).
    pub unmatched_requests: AtomicU64,
    /// HTTP/1 connections answered 408 because a request head was not
    /// complete within `limits.header_read_timeout`.
    pub header_timeouts: AtomicU64,
    rules: Mutex<BTreeMap<String, Arc<RuleMetrics>>>,
    servers: Mutex<BTreeMap<(String, String), Arc<ServerMetrics>>>,
}

impl Metrics {
    /// The counters of a rule, created on first use. Called when a snapshot
    /// is built, never per request.
    pub fn rule(&self, name: &str) -> Arc<RuleMetrics> {
        lock(&self.rules)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The counters of one upstream server of a backend.
    pub fn server(&self, backend: &str, address: &str) -> Arc<ServerMetrics> {
        lock(&self.servers)
            .entry((backend.to_owned(), address.to_owned()))
            .or_default()
            .clone()
    }

    /// A copy of the rule registry, for reports.
    pub fn rules(&self) -> Vec<(String, Arc<RuleMetrics>)> {
        lock(&self.rules)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A copy of the server registry, for reports.
    pub fn servers(&self) -> Vec<((String, String), Arc<ServerMetrics>)> {
        lock(&self.servers)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.active_connections.fetch_add(1, Relaxed);
        ConnectionGuard(self.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a registry lock leaves consistent data (inserts
    // only), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decrements the active connection gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Relaxed);
    }
}

/// Per-rule counters.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    pub requests: AtomicU64,
    /// Responses with a 5xx status (from the proxy or the upstream).
    pub errors: AtomicU64,
    pub statuses: StatusCounts,
    /// Time from request head to response head.
    pub latency: histogram::Histogram,
    /// Request body bytes from clients (declared lengths).
    pub bytes_in: AtomicU64,
    /// Response body bytes to clients (declared lengths).
    pub bytes_out: AtomicU64,
    /// Answers served from the rule's fallback source.
    pub fallbacks: AtomicU64,
}

impl RuleMetrics {
    /// Records one answered request.
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Relaxed);
        }
        self.statuses.record(status);
    }

    /// Whether nothing was ever counted: reports leave such rules out
    /// (the control plane shows a configured rule it has no figures for
    /// as all zeros), so thousands of idle rules cost nothing per report.
    pub fn is_untouched(&self) -> bool {
        self.requests.load(Relaxed) == 0
            && self.errors.load(Relaxed) == 0
            && self.bytes_in.load(Relaxed) == 0
            && self.bytes_out.load(Relaxed) == 0
            && self.fallbacks.load(Relaxed) == 0
            && self.latency.count() == 0
    }
}

/// Per-upstream-server counters.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub requests: AtomicU64,
    /// Connect failures, timeouts and broken responses.
    pub errors: AtomicU64,
    /// Attempts on this server that were retries of a failed attempt.
    pub retries: AtomicU64,
    /// Time from sending a request to the upstream's response head.
    pub latency: histogram::Histogram,
}

/// Status counts per class (exact) and per code (for the first few
/// distinct codes seen), lock-free.
#[derive(Debug, Default)]
pub struct StatusCounts {
    /// Index 1..=5 for 1xx..5xx; 0 for anything else.
    classes: [AtomicU64; 6],
    codes: [(AtomicU32, AtomicU64); STATUS_SLOTS],
}

impl StatusCounts {
    pub fn record(&self, status: u16) {
        self.classes[class_index(status)].fetch_add(1, Relaxed);
        let code = u32::from(status);
        for (slot_code, count) in &self.codes {
            let current = slot_code.load(Relaxed);
            let owned = current == code
                || (current == 0
                    && match slot_code.compare_exchange(0, code, Relaxed, Relaxed) {
                        Ok(_) => true,
                        Err(actual) => actual == code,
                    });
            if owned {
                count.fetch_add(1, Relaxed);
                return;
            }
        }
    }

    /// `(label, count)` per class with a non-zero count, e.g. `("2xx", 10)`.
    pub fn classes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        const LABELS: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
        LABELS
            .iter()
            .zip(&self.classes)
            .map(|(l, c)| (*l, c.load(Relaxed)))
            .filter(|(_, c)| *c > 0)
    }

    /// Exact counts for the codes that got a slot.
    pub fn codes(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.codes
            .iter()
            .map(|(code, count)| (code.load(Relaxed), count.load(Relaxed)))
            .filter(|(code, _)| *code != 0)
    }
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_keep_classes_exact_beyond_the_slots() {
        let s = StatusCounts::default();
        for code in 200..(200 + STATUS_SLOTS as u16 + 3) {
            s.record(code);
        }
        s.record(200);
        s.record(503);
        let classes: Vec<_> = s.classes().collect();
        assert_eq!(classes, vec![("2xx", STATUS_SLOTS as u64 + 4), ("5xx", 1)]);
        let codes: BTreeMap<u32, u64> = s.codes().collect();
        assert_eq!(codes.len(), STATUS_SLOTS);
        assert_eq!(codes.get(&200), Some(&2));
        // 503 arrived after the slots were full: counted in its class only.
        assert_eq!(codes.get(&503), None);
    }

    #[test]
    fn rule_counters_survive_in_the_registry() {
        let m = Metrics::default();
        m.rule("a").record(502);
        m.rule("a").record(200);
        let a = m.rule("a");
        assert_eq!(a.requests.load(Relaxed), 2);
        assert_eq!(a.errors.load(Relaxed), 1);
    }

    #[test]
    fn connection_guard_tracks_open_connections() {
        let m = Arc::new(Metrics::default());
        let g1 = m.connection_opened();
        let g2 = m.connection_opened();
        assert_eq!(m.active_connections.load(Relaxed), 2);
        drop(g1);
        assert_eq!(m.active_connections.load(Relaxed), 1);
        drop(g2);
        assert_eq!(m.active_connections.load(Relaxed), 0);
    }
}
