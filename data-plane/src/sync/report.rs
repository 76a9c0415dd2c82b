//! The periodic `MetricsReport`: cumulative counters since start, so a lost
//! report loses nothing.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_shared::proto;

use crate::state::NodeState;

pub fn metrics_report(state: &NodeState) -> proto::MetricsReport {
    let metrics = &state.metrics;
    let snapshot = state.snapshots.load();
    // (healthy, circuit state) of a server in the current snapshot.
    let server_state = |backend: &str, server: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.backends.get(backend))
            .and_then(|b| b.servers.iter().find(|s| s.address == server))
            .map_or((true, "closed"), |s| {
                (s.healthy(), s.circuit_state().as_str())
            })
    };
    let rules = metrics
        .rules()
        .into_iter()
        .filter(|(_, m)| !m.is_untouched())
        .map(|(rule, m)| proto::RuleStats {
            rule,
            requests: m.requests.load(Relaxed),
            errors: m.errors.load(Relaxed),
            status_counts: m.statuses.codes().collect(),
            latency: observed(m.latency.snapshot()),
            bytes_in: m.bytes_in.load(Relaxed),
            bytes_out: m.bytes_out.load(Relaxed),
            fallbacks: m.fallbacks.load(Relaxed),
        })
        .collect();
    let servers = metrics
        .servers()
        .into_iter()
        .map(|((backend, server), m)| {
            let (healthy, circuit) = server_state(&backend, &server);
            proto::ServerStats {
                healthy,
                circuit_state: circuit.to_owned(),
                backend,
                server,
                requests: m.requests.load(Relaxed),
                errors: m.errors.load(Relaxed),
                retries: m.retries.load(Relaxed),
                latency: Some(m.latency.snapshot().to_proto()),
            }
        })
        .collect();
    let process = crate::metrics::process::ProcessStats::read();
    proto::MetricsReport {
        timestamp_unix_ms: unix_ms(),
        uptime_ms: u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        active_connections: metrics.active_connections.load(Relaxed),
        rss_bytes: process.rss_bytes.unwrap_or(0),
        cpu_seconds: process.cpu_seconds.unwrap_or(0.0),
        rules,
        servers,
        caches: snapshot
            .as_ref()
            .map(|s| s.content.stats())
            .unwrap_or_default(),
        applied_version: state.snapshots.load().map_or(0, |s| s.version()),
        memory_limit_bytes: crate::metrics::process::memory_limit_bytes().unwrap_or(0),
    }
}

/// The histogram, or nothing when it is empty: an idle rule's 107 zero
/// buckets would make most of a report of thousands of rules, and the
/// control plane reads a missing histogram as an empty one.
fn observed(h: crate::metrics::histogram::HistogramSnapshot) -> Option<proto::Histogram> {
    (h.count > 0).then(|| h.to_proto())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::histogram::Histogram;

    #[test]
    fn only_histograms_with_observations_are_sent() {
        let h = Histogram::default();
        assert_eq!(observed(h.snapshot()), None);
        h.record(Duration::from_millis(3));
        let sent = observed(h.snapshot()).map(|p| (p.count, p.counts.iter().sum::<u64>()));
        assert_eq!(sent, Some((1, 1)));
    }

    #[test]
    fn a_rule_is_left_out_of_reports_only_until_anything_is_counted() {
        let untouched = crate::metrics::RuleMetrics::default();
        assert!(untouched.is_untouched());
        let answered = crate::metrics::RuleMetrics::default();
        answered.record(200);
        assert!(!answered.is_untouched());
        // Bytes or a latency without a completed count still make a rule
        // worth reporting.
        let streaming = crate::metrics::RuleMetrics::default();
        streaming.bytes_out.fetch_add(10, Relaxed);
        assert!(!streaming.is_untouched());
        let timed = crate::metrics::RuleMetrics::default();
        timed.latency.record(Duration::from_millis(1));
        assert!(!timed.is_untouched());
    }
}
