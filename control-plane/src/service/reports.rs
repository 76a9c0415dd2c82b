//! Read models built from the snapshot and the nodes' reports: status,
//! metrics, cache stats and the content source list. Only numbers the nodes
//! actually reported appear; nothing is estimated.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_shared::config::ContentKind;
use switchyard_shared::proto;

use super::Service;
use crate::time_util::rfc3339_from_unix_ms;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeBrief {
    pub node_id: String,
    pub connected: bool,
    pub acked_version: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub listeners: usize,
    pub backends: usize,
    pub servers: usize,
    pub content_sources: usize,
    pub rules: usize,
    pub nodes: usize,
    pub connected_nodes: usize,
    pub nodes_in_sync: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub version: u64,
    pub hash: String,
    pub uptime_seconds: u64,
    pub build: &'static str,
    pub last_event_seq: u64,
    pub counts: Counts,
    pub nodes: Vec<NodeBrief>,
    /// Fleet traffic, from the same data as `/api/metrics`.
    pub traffic: crate::metrics::TrafficSummary,
    /// Alerts firing now.
    pub alerts: Vec<crate::alerts::ActiveAlert>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub name: String,
    /// `file`, `inline` or `remote`.
    pub kind: &'static str,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For files: the blob data planes fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub size: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeCacheStats {
    pub node_id: String,
    pub reported_at: String,
    pub caches: Vec<CacheStatsView>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct CacheStatsView {
    pub source: String,
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale_served: u64,
    pub fetch_errors: u64,
}

impl CacheStatsView {
    fn add(&mut self, c: &proto::CacheStats) {
        self.entries += c.entries;
        self.bytes += c.bytes;
        self.hits += c.hits;
        self.misses += c.misses;
        self.stale_served += c.stale_served;
        self.fetch_errors += c.fetch_errors;
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheStatsReport {
    pub nodes: Vec<NodeCacheStats>,
    /// Per source, summed over the nodes that reported.
    pub totals: Vec<CacheStatsView>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RuleTotals {
    pub rule: String,
    pub requests: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub status_counts: BTreeMap<u32, u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeMetricsView {
    pub node_id: String,
    pub reported_at: String,
    pub applied_version: u64,
    pub uptime_ms: u64,
    pub active_connections: u64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub rules: Vec<RuleTotals>,
    pub servers: Vec<ServerView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerView {
    pub backend: String,
    pub server: String,
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
    pub healthy: bool,
    pub circuit_state: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsReportView {
    /// How many nodes have sent a report; everything below comes from them.
    pub reporting_nodes: usize,
    pub rules: Vec<RuleTotals>,
    pub nodes: Vec<NodeMetricsView>,
}

fn rule_totals(r: &proto::RuleStats) -> RuleTotals {
    RuleTotals {
        rule: r.rule.clone(),
        requests: r.requests,
        errors: r.errors,
        fallbacks: r.fallbacks,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        status_counts: r.status_counts.iter().map(|(k, v)| (*k, *v)).collect(),
    }
}

impl Service {
    pub fn status(&self) -> StatusView {
        let snap = self.current();
        let nodes = self.nodes().list();
        let cfg = &snap.config;
        StatusView {
            version: snap.version,
            hash: snap.hash.clone(),
            uptime_seconds: self.uptime().as_secs(),
            build: env!("CARGO_PKG_VERSION"),
            last_event_seq: self.events().last_seq(),
            traffic: self.traffic_summary(),
            alerts: self.metrics_hub().alerts.active(),
            counts: Counts {
                listeners: cfg.listeners.len(),
                backends: cfg.backends.len(),
                servers: cfg.backends.iter().map(|b| b.servers.len()).sum(),
                content_sources: cfg.content_sources.len(),
                rules: cfg.rules.len(),
                nodes: nodes.len(),
                connected_nodes: nodes.iter().filter(|n| n.connected).count(),
                nodes_in_sync: nodes
                    .iter()
                    .filter(|n| n.connected && n.acked_version == snap.version)
                    .count(),
            },
            nodes: nodes
                .into_iter()
                .map(|n| NodeBrief {
                    node_id: n.node_id,
                    connected: n.connected,
                    acked_version: n.acked_version,
                })
                .collect(),
        }
    }

    pub fn content_sources(&self) -> Vec<SourceView> {
        let snap = self.current();
        snap.config
            .content_sources
            .iter()
            .map(|s| {
                let blob = snap.blobs.get(&s.name);
                let (kind, file, size) = match s.kind() {
                    Some(ContentKind::File(f)) => {
                        ("file", Some(f.to_owned()), blob.map_or(0, |b| b.size))
                    }
                    Some(ContentKind::Inline(body)) => ("inline", None, body.len() as u64),
                    Some(ContentKind::Remote(_)) => ("remote", None, 0),
                    None => ("unknown", None, 0),
                };
                SourceView {
                    name: s.name.clone(),
                    kind,
                    content_type: s.effective_content_type(),
                    file,
                    sha256: blob.map(|b| b.sha256.clone()),
                    size,
                }
            })
            .collect()
    }

    pub fn cache_stats(&self) -> CacheStatsReport {
        let mut totals: BTreeMap<String, CacheStatsView> = BTreeMap::new();
        let mut nodes = Vec::new();
        for n in self.nodes().list() {
            let Some((at, report)) = n.metrics else {
                continue;
            };
            let mut caches = Vec::new();
            for c in &report.caches {
                let mut view = CacheStatsView {
                    source: c.source.clone(),
                    ..CacheStatsView::default()
                };
                view.add(c);
                caches.push(view);
                totals
                    .entry(c.source.clone())
                    .or_insert_with(|| CacheStatsView {
                        source: c.source.clone(),
                        ..CacheStatsView::default()
                    })
                    .add(c);
            }
            nodes.push(NodeCacheStats {
                node_id: n.node_id,
                reported_at: rfc3339_from_unix_ms(at),
                caches,
            });
        }
        CacheStatsReport {
            nodes,
            totals: totals.into_values().collect(),
        }
    }

    pub fn metrics_report(&self) -> MetricsReportView {
        let mut totals: BTreeMap<String, RuleTotals> = BTreeMap::new();
        let mut nodes = Vec::new();
        for n in self.nodes().list() {
            let Some((at, report)) = n.metrics else {
                continue;
            };
            for r in &report.rules {
                let t = totals.entry(r.rule.clone()).or_insert_with(|| RuleTotals {
                    rule: r.rule.clone(),
                    ..RuleTotals::default()
                });
                t.requests += r.requests;
                t.errors += r.errors;
                t.fallbacks += r.fallbacks;
                t.bytes_in += r.bytes_in;
                t.bytes_out += r.bytes_out;
                for (code, count) in &r.status_counts {
                    *t.status_counts.entry(*code).or_default() += count;
                }
            }
            nodes.push(NodeMetricsView {
                node_id: n.node_id,
                reported_at: rfc3339_from_unix_ms(at),
                applied_version: report.applied_version,
                uptime_ms: report.uptime_ms,
                active_connections: report.active_connections,
                rss_bytes: report.rss_bytes,
                cpu_seconds: report.cpu_seconds,
                rules: report.rules.iter().map(rule_totals).collect(),
                servers: report
                    .servers
                    .iter()
                    .map(|s| ServerView {
                        backend: s.backend.clone(),
                        server: s.server.clone(),
                        requests: s.requests,
                        errors: s.errors,
                        retries: s.retries,
                        healthy: s.healthy,
                        circuit_state: s.circuit_state.clone(),
                    })
                    .collect(),
            });
        }
        MetricsReportView {
            reporting_nodes: nodes.len(),
            rules: totals.into_values().collect(),
            nodes,
        }
    }
}
