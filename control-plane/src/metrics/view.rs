//! The JSON shapes of `GET /api/metrics` and of `metrics_update` events:
//! the plan's `SystemMetrics` (`request_count`, `error_count`,
//! `avg_response_time` in milliseconds, `cache_hit_ratio`,
//! `active_connections`, `uptime` in seconds, `rule_metrics` with
//! `backend_health`), extended with percentiles, backends and per-node
//! detail. A figure nobody measured is `null`, never a made-up zero.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_shared::config::{Action, Config};

use super::aggregate::{FleetSnapshot, ServerView};
use super::history::Point;
use super::totals::{Hist, RuleTotals};
use crate::time_util::rfc3339_from_unix_ms;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(h: &Hist) -> Self {
        let ms = |us: Option<f64>| us.map(|v| round3(v / 1000.0));
        Self {
            p50: ms(h.quantile_us(0.50)),
            p95: ms(h.quantile_us(0.95)),
            p99: ms(h.quantile_us(0.99)),
            max: ms((h.total() > 0).then_some(h.max_us as f64)),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn avg_ms(h: &Hist) -> Option<f64> {
    h.mean_us().map(|us| round3(us / 1000.0))
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round3(part as f64 / whole as f64))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleMetricsView {
    pub request_count: u64,
    pub error_count: u64,
    pub error_rate: Option<f64>,
    /// Milliseconds.
    pub avg_response_time: Option<f64>,
    pub latency_ms: Percentiles,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub fallbacks: u64,
    pub status_codes: BTreeMap<String, u64>,
    /// The backend the rule forwards to in the current config.
    pub backend: Option<String>,
    /// Server address -> `healthy`, `degraded` (some nodes eject it),
    /// `unhealthy` or `unknown` (no connected node reported it).
    pub backend_health: BTreeMap<String, &'static str>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerMetricsView {
    pub status: &'static str,
    pub healthy_nodes: u64,
    pub reporting_nodes: u64,
    pub circuit_states: BTreeMap<String, u64>,
    pub request_count: u64,
    pub error_count: u64,
    pub retries: u64,
    pub avg_response_time: Option<f64>,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeMetricsView {
    pub node_id: String,
    pub connected: bool,
    pub reported_at: String,
    pub uptime_seconds: u64,
    pub applied_version: u64,
    pub active_connections: u64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub request_count: u64,
    pub error_count: u64,
    pub avg_response_time: Option<f64>,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SystemMetrics {
    pub timestamp: String,
    pub request_count: u64,
    pub error_count: u64,
    pub error_rate: Option<f64>,
    /// Milliseconds, over every request since the nodes started.
    pub avg_response_time: Option<f64>,
    pub latency_ms: Percentiles,
    /// Over the last report interval.
    pub requests_per_second: Option<f64>,
    /// Content cache hits / lookups; `null` before any lookup.
    pub cache_hit_ratio: Option<f64>,
    pub active_connections: u64,
    /// Control plane uptime, seconds.
    pub uptime: u64,
    pub reporting_nodes: usize,
    pub connected_nodes: u64,
    pub rss_bytes: u64,
    pub rule_metrics: BTreeMap<String, RuleMetricsView>,
    /// Backend -> server -> figures.
    pub backends: BTreeMap<String, BTreeMap<String, ServerMetricsView>>,
    /// Per-node detail (left out of `metrics_update` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeMetricsView>>,
}

fn server_status(v: Option<&ServerView>) -> &'static str {
    match v {
        None => "unknown",
        Some(v) if v.reporting_nodes == 0 => "unknown",
        Some(v) if v.healthy_nodes == v.reporting_nodes => "healthy",
        Some(v) if v.healthy_nodes == 0 => "unhealthy",
        Some(_) => "degraded",
    }
}

fn rule_view(
    r: &RuleTotals,
    backend: Option<&str>,
    fleet: &FleetSnapshot,
    config: &Config,
) -> RuleMetricsView {
    let mut backend_health = BTreeMap::new();
    if let Some(name) = backend {
        if let Some(b) = config.backends.iter().find(|b| b.name == name) {
            for s in &b.servers {
                let key = (name.to_owned(), s.address.clone());
                backend_health.insert(s.address.clone(), server_status(fleet.servers.get(&key)));
            }
        }
    }
    RuleMetricsView {
        request_count: r.requests,
        error_count: r.errors,
        error_rate: ratio(r.errors, r.requests),
        avg_response_time: avg_ms(&r.latency),
        latency_ms: Percentiles::of(&r.latency),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        fallbacks: r.fallbacks,
        status_codes: r
            .status_counts
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect(),
        backend: backend.map(str::to_owned),
        backend_health,
    }
}

/// How much a view of the fleet shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `GET /api/metrics`: every configured rule (idle ones as zeros) and
    /// per-node figures.
    Full,
    /// `metrics_update` events: only the rules with figures, no per-node
    /// detail (with 10,000 configured rules the full view is megabytes of
    /// JSON per tick, almost all of it zeros).
    Summary,
}

/// Builds the view. `last` is the latest history point (for the rate).
pub fn system_metrics(
    fleet: &FleetSnapshot,
    config: &Config,
    uptime_seconds: u64,
    last: Option<&Point>,
    detail: Detail,
) -> SystemMetrics {
    let totals = &fleet.totals;
    let latency = totals.latency();
    let (hits, misses) = totals.cache_hits_misses();
    let backend_of: BTreeMap<&str, &str> = config
        .rules
        .iter()
        .filter_map(|r| match &r.action {
            Action::Forward(f) => Some((r.name.as_str(), f.backend.as_str())),
            Action::Replace(_) => None,
        })
        .collect();
    let mut rule_metrics = BTreeMap::new();
    if detail == Detail::Full {
        // Rules of the current config appear even before their first request.
        for rule in &config.rules {
            let empty = RuleTotals::default();
            let r = totals.rules.get(&rule.name).unwrap_or(&empty);
            let backend = backend_of.get(rule.name.as_str()).copied();
            rule_metrics.insert(rule.name.clone(), rule_view(r, backend, fleet, config));
        }
    }
    for (name, r) in &totals.rules {
        if !rule_metrics.contains_key(name) {
            let backend = backend_of.get(name.as_str()).copied();
            rule_metrics.insert(name.clone(), rule_view(r, backend, fleet, config));
        }
    }
    let mut backends: BTreeMap<String, BTreeMap<String, ServerMetricsView>> = BTreeMap::new();
    let mut keys: Vec<(String, String)> = config
        .backends
        .iter()
        .flat_map(|b| {
            b.servers
                .iter()
                .map(|s| (b.name.clone(), s.address.clone()))
        })
        .collect();
    keys.extend(totals.servers.keys().cloned());
    keys.sort();
    keys.dedup();
    for key in keys {
        let view = fleet.servers.get(&key);
        let t = totals.servers.get(&key).cloned().unwrap_or_default();
        backends.entry(key.0.clone()).or_default().insert(
            key.1.clone(),
            ServerMetricsView {
                status: server_status(view),
                healthy_nodes: view.map_or(0, |v| v.healthy_nodes),
                reporting_nodes: view.map_or(0, |v| v.reporting_nodes),
                circuit_states: view.map(|v| v.circuit_states.clone()).unwrap_or_default(),
                request_count: t.requests,
                error_count: t.errors,
                retries: t.retries,
                avg_response_time: avg_ms(&t.latency),
                latency_ms: Percentiles::of(&t.latency),
            },
        );
    }
    let nodes = (detail == Detail::Full).then(|| {
        fleet
            .nodes
            .iter()
            .map(|n| {
                let latency = n.totals.latency();
                NodeMetricsView {
                    node_id: n.node_id.clone(),
                    connected: n.connected,
                    reported_at: rfc3339_from_unix_ms(n.reported_at_ms),
                    uptime_seconds: n.uptime_ms / 1000,
                    applied_version: n.applied_version,
                    active_connections: n.active_connections,
                    rss_bytes: n.rss_bytes,
                    cpu_seconds: n.totals.cpu_seconds,
                    request_count: n.totals.requests(),
                    error_count: n.totals.errors(),
                    avg_response_time: avg_ms(&latency),
                    latency_ms: Percentiles::of(&latency),
                }
            })
            .collect()
    });
    SystemMetrics {
        timestamp: rfc3339_from_unix_ms(fleet.at_ms),
        request_count: totals.requests(),
        error_count: totals.errors(),
        error_rate: ratio(totals.errors(), totals.requests()),
        avg_response_time: avg_ms(&latency),
        latency_ms: Percentiles::of(&latency),
        requests_per_second: last
            .filter(|p| p.span_ms > 0)
            .map(|p| round3(p.requests as f64 * 1000.0 / p.span_ms as f64)),
        cache_hit_ratio: ratio(hits, hits + misses),
        active_connections: fleet.active_connections,
        uptime: uptime_seconds,
        reporting_nodes: fleet.nodes.len(),
        connected_nodes: fleet.connected_nodes,
        rss_bytes: fleet.rss_bytes,
        rule_metrics,
        backends,
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::totals::RuleTotals;

    #[test]
    fn the_summary_shows_rules_with_figures_and_the_full_view_every_configured_rule() {
        let config = switchyard_shared::parse::parse_yaml(
            r#"
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9
rules:
  - name: busy
    match: { path_prefix: /busy }
    action: { forward: { backend: app } }
  - name: idle
    match: { path_prefix: /idle }
    action: { forward: { backend: app } }
"#,
        )
        .expect("parse");
        let mut fleet = FleetSnapshot::default();
        fleet.totals.rules.insert(
            "busy".to_owned(),
            RuleTotals {
                requests: 3,
                ..RuleTotals::default()
            },
        );
        let names = |detail| {
            let view = system_metrics(&fleet, &config, 1, None, detail);
            let names: Vec<String> = view.rule_metrics.keys().cloned().collect();
            (names, view.nodes.is_some())
        };
        assert_eq!(
            names(Detail::Full),
            (vec!["busy".into(), "idle".into()], true)
        );
        assert_eq!(names(Detail::Summary), (vec!["busy".into()], false));
        let summary = system_metrics(&fleet, &config, 1, None, Detail::Summary);
        assert_eq!(summary.rule_metrics["busy"].request_count, 3);
        assert_eq!(summary.rule_metrics["busy"].backend.as_deref(), Some("app"));
    }
}
