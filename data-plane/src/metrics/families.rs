//! The Prometheus families beyond request and upstream counts: latency
//! histograms, exact status codes, errors, body bytes and process figures.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use switchyard_shared::proto;

use super::histogram::{HistogramSnapshot, PROMETHEUS_BOUNDS_US};
use super::process::ProcessStats;
use super::Metrics;

/// Appends the families to a `/metrics` page.
pub fn render(out: &mut String, metrics: &Metrics) {
    let rules = metrics.rules();
    let servers = metrics.servers();

    family(
        out,
        "switchyard_request_duration_seconds",
        "histogram",
        "Time from request head to response head, by rule.",
    );
    for (name, rule) in &rules {
        let labels = format!("rule=\"{}\"", escape(name));
        histogram(
            out,
            "switchyard_request_duration_seconds",
            &labels,
            &rule.latency.snapshot(),
        );
    }

    family(
        out,
        "switchyard_responses_total",
        "counter",
        "Responses by rule and exact status code (the first codes seen per rule).",
    );
    for (name, rule) in &rules {
        for (code, count) in rule.statuses.codes() {
            let _ = writeln!(
                out,
                "switchyard_responses_total{{rule=\"{}\",code=\"{code}\"}} {count}",
                escape(name)
            );
        }
    }

    type Read = fn(&super::RuleMetrics) -> u64;
    let per_rule: [(&str, &str, Read); 3] = [
        (
            "switchyard_request_errors_total",
            "Requests answered with a 5xx status, by rule.",
            |r| r.errors.load(Relaxed),
        ),
        (
            "switchyard_request_bytes_total",
            "Request body bytes received from clients (declared lengths), by rule.",
            |r| r.bytes_in.load(Relaxed),
        ),
        (
            "switchyard_response_bytes_total",
            "Response body bytes sent to clients (declared lengths), by rule.",
            |r| r.bytes_out.load(Relaxed),
        ),
    ];
    for (metric, help, read) in per_rule {
        family(out, metric, "counter", help);
        for (name, rule) in &rules {
            let _ = writeln!(out, "{metric}{{rule=\"{}\"}} {}", escape(name), read(rule));
        }
    }

    family(
        out,
        "switchyard_upstream_request_duration_seconds",
        "histogram",
        "Time from sending a request upstream to its response head, by server.",
    );
    for ((backend, server), m) in &servers {
        let labels = format!(
            "backend=\"{}\",server=\"{}\"",
            escape(backend),
            escape(server)
        );
        histogram(
            out,
            "switchyard_upstream_request_duration_seconds",
            &labels,
            &m.latency.snapshot(),
        );
    }

    let process = ProcessStats::read();
    if let Some(rss) = process.rss_bytes {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Some(cpu) = process.cpu_seconds {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Some(fds) = process.open_fds {
        family(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {fds}");
    }
}

/// Content cache figures per source (from the applied snapshot).
pub fn render_caches(out: &mut String, caches: &[proto::CacheStats]) {
    type Read = fn(&proto::CacheStats) -> u64;
    let families: [(&str, &str, &str, Read); 6] = [
        (
            "switchyard_cache_hits_total",
            "counter",
            "Content cache hits, by source.",
            |c| c.hits,
        ),
        (
            "switchyard_cache_misses_total",
            "counter",
            "Content cache misses, by source.",
            |c| c.misses,
        ),
        (
            "switchyard_cache_stale_served_total",
            "counter",
            "Stale content served, by source.",
            |c| c.stale_served,
        ),
        (
            "switchyard_cache_fetch_errors_total",
            "counter",
            "Failed content fetches, by source.",
            |c| c.fetch_errors,
        ),
        (
            "switchyard_cache_entries",
            "gauge",
            "Content cache entries, by source.",
            |c| c.entries,
        ),
        (
            "switchyard_cache_bytes",
            "gauge",
            "Content cache size in bytes, by source.",
            |c| c.bytes,
        ),
    ];
    for (name, kind, help, read) in families {
        family(out, name, kind, help);
        for c in caches {
            let _ = writeln!(
                out,
                "{name}{{source=\"{}\"}} {}",
                escape(&c.source),
                read(c)
            );
        }
    }
}

/// One histogram series: cumulative `_bucket`s at the Prometheus bounds,
/// `+Inf`, `_sum` (seconds) and `_count`, all from the same snapshot.
pub fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for bound in PROMETHEUS_BOUNDS_US {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {}",
            seconds(bound),
            h.cumulative_at(bound)
        );
    }
    let total: u64 = h.counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(h.sum_us));
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let m = Metrics::default();
        let rule = m.rule("api");
        rule.latency.record(Duration::from_micros(90));
        rule.latency.record(Duration::from_millis(3));
        rule.latency.record(Duration::from_secs(120));
        rule.record(200);
        let mut out = String::new();
        render(&mut out, &m);
        let bucket = |le: &str| {
            let prefix =
                format!("switchyard_request_duration_seconds_bucket{{rule=\"api\",le=\"{le}\"}} ");
            out.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(str::to_owned)
        };
        assert_eq!(bucket("0.0001").as_deref(), Some("1"));
        assert_eq!(bucket("0.0025").as_deref(), Some("1"));
        assert_eq!(bucket("0.005").as_deref(), Some("2"));
        assert_eq!(bucket("60").as_deref(), Some("2"));
        assert_eq!(bucket("+Inf").as_deref(), Some("3"));
        assert!(out.contains("switchyard_request_duration_seconds_count{rule=\"api\"} 3\n"));
        assert!(out.contains("switchyard_responses_total{rule=\"api\",code=\"200\"} 1\n"));
        assert!(out.contains("# TYPE switchyard_request_duration_seconds histogram\n"));
    }
}
