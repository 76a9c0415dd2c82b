//! Renders [`Metrics`] in the Prometheus text exposition format (0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::Metrics;

/// Process-level values that do not live in [`Metrics`].
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Version of the applied snapshot, 0 when none.
    pub snapshot_version: u64,
    pub control_plane_connected: bool,
    /// (backend, server, in rotation) for the applied snapshot.
    pub server_health: Vec<(String, String, bool)>,
}

/// The whole `/metrics` page.
pub fn render(metrics: &Metrics, gauges: Gauges) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "switchyard_requests_total",
        "counter",
        "Requests answered, by matched rule and status class.",
    );
    let rules = metrics.rules();
    for (name, rule) in &rules {
        for (class, count) in rule.statuses.classes() {
            let _ = writeln!(
                out,
                "switchyard_requests_total{{rule=\"{}\",status_class=\"{class}\"}} {count}",
                escape(name)
            );
        }
    }

    family(
        &mut out,
        "switchyard_unmatched_requests_total",
        "counter",
        "Requests no rule matched (answered 404).",
    );
    let _ = writeln!(
        out,
        "switchyard_unmatched_requests_total {}",
        metrics.unmatched_requests.load(Relaxed)
    );
    family(
        &mut out,
        "switchyard_client_header_timeouts_total",
        "counter",
        "HTTP/1 client connections answered 408: a request head did not complete within limits.header_read_timeout.",
    );
    let _ = writeln!(
        out,
        "switchyard_client_header_timeouts_total {}",
        metrics.header_timeouts.load(Relaxed)
    );

    let servers = metrics.servers();
    family(
        &mut out,
        "switchyard_upstream_requests_total",
        "counter",
        "Requests sent to an upstream server.",
    );
    for ((backend, server), m) in &servers {
        let _ = writeln!(
            out,
            "switchyard_upstream_requests_total{{backend=\"{}\",server=\"{}\"}} {}",
            escape(backend),
            escape(server),
            m.requests.load(Relaxed)
        );
    }
    family(
        &mut out,
        "switchyard_upstream_errors_total",
        "counter",
        "Upstream attempts that failed (connect error, timeout, broken response).",
    );
    for ((backend, server), m) in &servers {
        let _ = writeln!(
            out,
            "switchyard_upstream_errors_total{{backend=\"{}\",server=\"{}\"}} {}",
            escape(backend),
            escape(server),
            m.errors.load(Relaxed)
        );
    }

    family(
        &mut out,
        "switchyard_upstream_retries_total",
        "counter",
        "Retry attempts sent to an upstream server after another attempt failed.",
    );
    for ((backend, server), m) in &servers {
        let _ = writeln!(
            out,
            "switchyard_upstream_retries_total{{backend=\"{}\",server=\"{}\"}} {}",
            escape(backend),
            escape(server),
            m.retries.load(Relaxed)
        );
    }

    family(
        &mut out,
        "switchyard_upstream_healthy",
        "gauge",
        "1 while an upstream server is in rotation, 0 while ejected by outlier detection.",
    );
    for (backend, server, healthy) in &gauges.server_health {
        let _ = writeln!(
            out,
            "switchyard_upstream_healthy{{backend=\"{}\",server=\"{}\"}} {}",
            escape(backend),
            escape(server),
            u8::from(*healthy)
        );
    }

    family(
        &mut out,
        "switchyard_active_connections",
        "gauge",
        "Client connections open on the proxy listeners.",
    );
    let _ = writeln!(
        out,
        "switchyard_active_connections {}",
        metrics.active_connections.load(Relaxed)
    );
    family(
        &mut out,
        "switchyard_snapshot_version",
        "gauge",
        "Version of the applied config snapshot (0 before the first).",
    );
    let _ = writeln!(
        out,
        "switchyard_snapshot_version {}",
        gauges.snapshot_version
    );
    family(
        &mut out,
        "switchyard_control_plane_connected",
        "gauge",
        "1 while the sync stream to the control plane is open.",
    );
    let _ = writeln!(
        out,
        "switchyard_control_plane_connected {}",
        u8::from(gauges.control_plane_connected)
    );
    super::families::render(&mut out, metrics);
    out
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
    use super::*;

    #[test]
    fn renders_families_with_help_type_and_labels() {
        let m = Metrics::default();
        m.rule("api \"v1\"").record(200);
        m.rule("api \"v1\"").record(504);
        m.server("pool", "127.0.0.1:1")
            .requests
            .fetch_add(3, Relaxed);
        let text = render(
            &m,
            Gauges {
                snapshot_version: 7,
                control_plane_connected: true,
                server_health: vec![("pool".to_owned(), "127.0.0.1:1".to_owned(), false)],
            },
        );
        assert!(text.contains("# TYPE switchyard_requests_total counter\n"));
        assert!(text.contains(
            "switchyard_requests_total{rule=\"api \\\"v1\\\"\",status_class=\"2xx\"} 1\n"
        ));
        assert!(text.contains(
            "switchyard_requests_total{rule=\"api \\\"v1\\\"\",status_class=\"5xx\"} 1\n"
        ));
        assert!(text.contains(
            "switchyard_upstream_requests_total{backend=\"pool\",server=\"127.0.0.1:1\"} 3\n"
        ));
        assert!(text.contains("# TYPE switchyard_active_connections gauge\n"));
        assert!(text.contains("switchyard_snapshot_version 7\n"));
        assert!(text
            .contains("switchyard_upstream_healthy{backend=\"pool\",server=\"127.0.0.1:1\"} 0\n"));
        assert!(text.contains("switchyard_control_plane_connected 1\n"));
        // Every sample line belongs to a family announced before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = declared.last().map(String::as_str).unwrap_or_default();
                // Histogram samples carry the family name plus a suffix.
                let belongs = name == family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family));
                assert!(belongs, "{line} (family {family})");
            }
        }
    }
}
