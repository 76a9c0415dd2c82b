//! Per-node and fleet aggregates of the nodes' cumulative reports. A node
//! that restarts starts counting from zero again; what it counted before is
//! carried in a base so node and fleet totals never go backwards. A
//! disconnected node keeps its totals but no longer adds to live gauges.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use switchyard_shared::proto;

use super::totals::Totals;

/// The latest report of a node, reduced to what the views need.
#[derive(Debug, Clone)]
struct Latest {
    received_ms: u64,
    uptime_ms: u64,
    applied_version: u64,
    active_connections: u64,
    rss_bytes: u64,
    memory_limit_bytes: u64,
    totals: Totals,
    servers: BTreeMap<(String, String), ServerState>,
}

#[derive(Debug, Default)]
struct NodeAccum {
    /// What earlier incarnations of the node counted.
    base: Totals,
    latest: Option<Latest>,
}

/// A server's state as one node last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub healthy: bool,
    pub circuit_state: String,
}

/// One node's figures.
#[derive(Debug, Clone)]
pub struct NodeFigures {
    pub node_id: String,
    pub connected: bool,
    pub reported_at_ms: u64,
    pub uptime_ms: u64,
    pub applied_version: u64,
    pub active_connections: u64,
    pub rss_bytes: u64,
    /// The node's memory limit (0: not reported).
    pub memory_limit_bytes: u64,
    /// Since the node was first seen, restarts included.
    pub totals: Totals,
    pub servers: BTreeMap<(String, String), ServerState>,
}

/// How the connected nodes see one upstream server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerView {
    pub healthy_nodes: u64,
    pub reporting_nodes: u64,
    /// Circuit state -> how many nodes report it.
    pub circuit_states: BTreeMap<String, u64>,
}

/// The fleet at one instant.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    pub at_ms: u64,
    pub nodes: Vec<NodeFigures>,
    /// Every node's totals, connected or not.
    pub totals: Totals,
    /// Live gauges: connected nodes only.
    pub active_connections: u64,
    pub rss_bytes: u64,
    pub connected_nodes: u64,
    pub servers: BTreeMap<(String, String), ServerView>,
}

#[derive(Debug, Default)]
pub struct Aggregator {
    nodes: Mutex<BTreeMap<String, NodeAccum>>,
}

impl Aggregator {
    /// Takes a node's report (cumulative since the node started).
    pub fn ingest(&self, node_id: &str, report: &proto::MetricsReport, received_ms: u64) {
        let totals = Totals::from_report(report);
        let servers = report
            .servers
            .iter()
            .map(|s| {
                (
                    (s.backend.clone(), s.server.clone()),
                    ServerState {
                        healthy: s.healthy,
                        circuit_state: s.circuit_state.clone(),
                    },
                )
            })
            .collect();
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let acc = nodes.entry(node_id.to_owned()).or_default();
        if let Some(prev) = &acc.latest {
            // Uptime going backwards means a new process: bank its past.
            if report.uptime_ms < prev.uptime_ms {
                acc.base.add(&prev.totals);
            }
        }
        acc.latest = Some(Latest {
            received_ms,
            uptime_ms: report.uptime_ms,
            applied_version: report.applied_version,
            active_connections: report.active_connections,
            rss_bytes: report.rss_bytes,
            memory_limit_bytes: report.memory_limit_bytes,
            totals,
            servers,
        });
    }

    /// The fleet now; `connected` says which node ids have a live stream.
    pub fn snapshot(&self, connected: &HashMap<String, bool>, at_ms: u64) -> FleetSnapshot {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut fleet = FleetSnapshot {
            at_ms,
            ..FleetSnapshot::default()
        };
        for (node_id, acc) in nodes.iter() {
            let Some(latest) = &acc.latest else { continue };
            let is_connected = connected.get(node_id).copied().unwrap_or(false);
            let mut totals = acc.base.clone();
            totals.add(&latest.totals);
            fleet.totals.add(&totals);
            if is_connected {
                fleet.connected_nodes += 1;
                fleet.active_connections += latest.active_connections;
                fleet.rss_bytes += latest.rss_bytes;
                for (key, state) in &latest.servers {
                    let v = fleet.servers.entry(key.clone()).or_default();
                    v.reporting_nodes += 1;
                    v.healthy_nodes += u64::from(state.healthy);
                    *v.circuit_states
                        .entry(state.circuit_state.clone())
                        .or_default() += 1;
                }
            }
            fleet.nodes.push(NodeFigures {
                node_id: node_id.clone(),
                connected: is_connected,
                reported_at_ms: latest.received_ms,
                uptime_ms: latest.uptime_ms,
                applied_version: latest.applied_version,
                // A gone node has no live connections to report.
                active_connections: if is_connected {
                    latest.active_connections
                } else {
                    0
                },
                rss_bytes: latest.rss_bytes,
                memory_limit_bytes: latest.memory_limit_bytes,
                totals,
                servers: latest.servers.clone(),
            });
        }
        fleet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(uptime_ms: u64, requests: u64, conns: u64) -> proto::MetricsReport {
        proto::MetricsReport {
            uptime_ms,
            active_connections: conns,
            rules: vec![proto::RuleStats {
                rule: "api".to_owned(),
                requests,
                errors: requests / 10,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn restarts_carry_totals_and_disconnects_drop_live_gauges() {
        let agg = Aggregator::default();
        agg.ingest("a", &report(1_000, 100, 3), 1);
        agg.ingest("a", &report(2_000, 150, 4), 2);
        // Restarted: counts from zero again.
        agg.ingest("a", &report(500, 20, 1), 3);
        agg.ingest("b", &report(9_000, 10, 7), 3);
        let mut connected = HashMap::from([("a".to_owned(), true), ("b".to_owned(), true)]);
        let fleet = agg.snapshot(&connected, 4);
        assert_eq!(fleet.totals.requests(), 150 + 20 + 10);
        assert_eq!(fleet.totals.errors(), 15 + 2 + 1);
        assert_eq!(fleet.active_connections, 1 + 7);
        assert_eq!(fleet.connected_nodes, 2);

        connected.insert("b".to_owned(), false);
        let fleet = agg.snapshot(&connected, 5);
        assert_eq!(fleet.totals.requests(), 180, "totals stay");
        assert_eq!(fleet.active_connections, 1, "live gauges stop counting");
        let b = fleet.nodes.iter().find(|n| n.node_id == "b");
        assert_eq!(
            b.map(|n| (n.connected, n.active_connections)),
            Some((false, 0))
        );
    }
}
