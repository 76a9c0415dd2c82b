//! The control plane's Prometheus `/metrics` (text format 0.0.4): fleet
//! figures labelled by node, rule, backend and server, plus the control
//! plane's own state. Label values come from config names and node ids
//! only, so series stay bounded.

use std::fmt::Write as _;

use super::aggregate::FleetSnapshot;
use super::totals::Hist;

/// Bucket bounds (µs) published for latency histograms: a 1-2.5-5 ladder,
/// each one a bound of the data planes' histograms so counts are exact.
const BOUNDS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 60_000_000,
];

/// The control plane's own figures.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneFigures {
    pub config_version: u64,
    pub uptime_seconds: u64,
    pub known_nodes: u64,
    pub events_published: u64,
    pub websocket_clients: u64,
    pub rss_bytes: Option<u64>,
    /// Alerts firing now.
    pub alerts: Vec<crate::alerts::ActiveAlert>,
}

struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Hist) {
        let bucket = format!("{name}_bucket");
        for bound in BOUNDS_US {
            let le = (bound as f64 / 1e6).to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, h.cumulative_at(bound));
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        let total = h.total();
        self.sample(&bucket, &l, total);
        self.sample(&format!("{name}_sum"), labels, h.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), labels, total);
    }
}

/// Renders the page.
pub fn render(fleet: &FleetSnapshot, cp: &ControlPlaneFigures) -> String {
    let mut p = Page(String::with_capacity(8192));

    p.family(
        "switchyard_config_version",
        "gauge",
        "Current configuration version.",
    );
    p.sample("switchyard_config_version", &[], cp.config_version);
    p.family(
        "switchyard_control_plane_uptime_seconds",
        "gauge",
        "Seconds since the control plane started.",
    );
    p.sample(
        "switchyard_control_plane_uptime_seconds",
        &[],
        cp.uptime_seconds,
    );
    p.family(
        "switchyard_events_published_total",
        "counter",
        "Events published on the event stream.",
    );
    p.sample(
        "switchyard_events_published_total",
        &[],
        cp.events_published,
    );
    p.family(
        "switchyard_websocket_clients",
        "gauge",
        "WebSocket /ws/events subscribers connected now.",
    );
    p.sample("switchyard_websocket_clients", &[], cp.websocket_clients);
    p.family(
        "switchyard_nodes",
        "gauge",
        "Data planes known to the control plane, by connection state.",
    );
    p.sample(
        "switchyard_nodes",
        &[("state", "connected")],
        fleet.connected_nodes,
    );
    p.sample(
        "switchyard_nodes",
        &[("state", "disconnected")],
        cp.known_nodes.saturating_sub(fleet.connected_nodes),
    );
    if let Some(rss) = cp.rss_bytes {
        p.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size of the control plane in bytes.",
        );
        p.sample("process_resident_memory_bytes", &[], rss);
    }

    p.family(
        "switchyard_alerts_firing",
        "gauge",
        "Alerts firing now (1 per alert and subject; resolved alerts leave).",
    );
    for a in &cp.alerts {
        p.sample(
            "switchyard_alerts_firing",
            &[("alert", a.alert), ("subject", &a.subject)],
            1,
        );
    }

    node_families(&mut p, fleet);
    rule_families(&mut p, fleet);
    upstream_families(&mut p, fleet);
    cache_families(&mut p, fleet);
    p.0
}

fn node_families(p: &mut Page, fleet: &FleetSnapshot) {
    type Read = fn(&super::aggregate::NodeFigures) -> f64;
    let gauges: [(&str, &str, &str, Read); 6] = [
        (
            "switchyard_node_connected",
            "gauge",
            "1 while the node's sync stream is open.",
            |n| f64::from(u8::from(n.connected)),
        ),
        (
            "switchyard_node_active_connections",
            "gauge",
            "Client connections open on the node (0 once disconnected).",
            |n| n.active_connections as f64,
        ),
        (
            "switchyard_node_resident_memory_bytes",
            "gauge",
            "Resident memory of the node at its last report.",
            |n| n.rss_bytes as f64,
        ),
        (
            "switchyard_node_cpu_seconds_total",
            "counter",
            "CPU time the node used, restarts included.",
            |n| n.totals.cpu_seconds,
        ),
        (
            "switchyard_node_applied_version",
            "gauge",
            "Config version the node runs, from its last report.",
            |n| n.applied_version as f64,
        ),
        (
            "switchyard_node_uptime_seconds",
            "gauge",
            "Node process uptime at its last report.",
            |n| (n.uptime_ms / 1000) as f64,
        ),
    ];
    for (name, kind, help, read) in gauges {
        p.family(name, kind, help);
        for n in &fleet.nodes {
            p.sample(name, &[("node", &n.node_id)], read(n));
        }
    }
}

fn rule_families(p: &mut Page, fleet: &FleetSnapshot) {
    type Read = fn(&super::totals::RuleTotals) -> u64;
    let counters: [(&str, &str, Read); 5] = [
        (
            "switchyard_requests_total",
            "Requests answered, by node and rule.",
            |r| r.requests,
        ),
        (
            "switchyard_request_errors_total",
            "Requests answered with a 5xx status, by node and rule.",
            |r| r.errors,
        ),
        (
            "switchyard_request_bytes_total",
            "Request body bytes from clients, by node and rule.",
            |r| r.bytes_in,
        ),
        (
            "switchyard_response_bytes_total",
            "Response body bytes to clients, by node and rule.",
            |r| r.bytes_out,
        ),
        (
            "switchyard_fallbacks_total",
            "Responses served from a rule's fallback, by node and rule.",
            |r| r.fallbacks,
        ),
    ];
    for (name, help, read) in counters {
        p.family(name, "counter", help);
        for n in &fleet.nodes {
            for (rule, r) in &n.totals.rules {
                p.sample(name, &[("node", &n.node_id), ("rule", rule)], read(r));
            }
        }
    }
    p.family(
        "switchyard_responses_total",
        "counter",
        "Responses by rule and status code, summed over the fleet.",
    );
    for (rule, r) in &fleet.totals.rules {
        for (code, n) in &r.status_counts {
            p.sample(
                "switchyard_responses_total",
                &[("rule", rule), ("code", &code.to_string())],
                n,
            );
        }
    }
    p.family(
        "switchyard_request_duration_seconds",
        "histogram",
        "Request head to response head, by rule, merged over the fleet.",
    );
    for (rule, r) in &fleet.totals.rules {
        p.histogram(
            "switchyard_request_duration_seconds",
            &[("rule", rule)],
            &r.latency,
        );
    }
}

fn upstream_families(p: &mut Page, fleet: &FleetSnapshot) {
    type Read = fn(&super::totals::ServerTotals) -> u64;
    let counters: [(&str, &str, Read); 3] = [
        (
            "switchyard_upstream_requests_total",
            "Requests sent to an upstream server, fleet-wide.",
            |s| s.requests,
        ),
        (
            "switchyard_upstream_errors_total",
            "Failed upstream attempts, fleet-wide.",
            |s| s.errors,
        ),
        (
            "switchyard_upstream_retries_total",
            "Retry attempts on an upstream server, fleet-wide.",
            |s| s.retries,
        ),
    ];
    for (name, help, read) in counters {
        p.family(name, "counter", help);
        for ((backend, server), s) in &fleet.totals.servers {
            p.sample(name, &[("backend", backend), ("server", server)], read(s));
        }
    }
    p.family(
        "switchyard_upstream_healthy_nodes",
        "gauge",
        "Connected nodes that have the server in rotation.",
    );
    for ((backend, server), v) in &fleet.servers {
        p.sample(
            "switchyard_upstream_healthy_nodes",
            &[("backend", backend), ("server", server)],
            v.healthy_nodes,
        );
    }
    p.family(
        "switchyard_upstream_circuit_nodes",
        "gauge",
        "Connected nodes per circuit breaker state of the server.",
    );
    for ((backend, server), v) in &fleet.servers {
        for (state, n) in &v.circuit_states {
            p.sample(
                "switchyard_upstream_circuit_nodes",
                &[("backend", backend), ("server", server), ("state", state)],
                n,
            );
        }
    }
    p.family(
        "switchyard_upstream_request_duration_seconds",
        "histogram",
        "Upstream request to response head, by server, merged over the fleet.",
    );
    for ((backend, server), s) in &fleet.totals.servers {
        p.histogram(
            "switchyard_upstream_request_duration_seconds",
            &[("backend", backend), ("server", server)],
            &s.latency,
        );
    }
}

fn cache_families(p: &mut Page, fleet: &FleetSnapshot) {
    p.family(
        "switchyard_cache_hits_total",
        "counter",
        "Content cache hits by source, fleet-wide.",
    );
    for (source, c) in &fleet.totals.caches {
        p.sample("switchyard_cache_hits_total", &[("source", source)], c.hits);
    }
    p.family(
        "switchyard_cache_misses_total",
        "counter",
        "Content cache misses by source, fleet-wide.",
    );
    for (source, c) in &fleet.totals.caches {
        p.sample(
            "switchyard_cache_misses_total",
            &[("source", source)],
            c.misses,
        );
    }
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
