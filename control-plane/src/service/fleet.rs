//! The service side of data-plane sessions: registering nodes, recording
//! acks, nacks and metrics as events, and fanning commands out with per-node
//! confirmations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use switchyard_shared::proto::{self, node_event, node_message};

use super::Service;
use crate::error::ServiceError;
use crate::nodes::NodeSender;

/// What one node answered to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommandOutcome {
    pub node_id: String,
    /// The node answered before the timeout.
    pub confirmed: bool,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub cleared_entries: u64,
}

/// The answer to a cache clear: which nodes confirmed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheClearView {
    /// The source cleared; absent: every source.
    pub source: Option<String>,
    /// Nodes connected when the command was sent.
    pub nodes_total: usize,
    pub nodes_confirmed: usize,
    pub nodes: Vec<CommandOutcome>,
}

static NEXT_COMMAND: AtomicU64 = AtomicU64::new(1);

impl Service {
    /// Registers a node that said Hello; returns the connection generation.
    pub fn node_connected(&self, hello: &proto::Hello, sender: NodeSender) -> u64 {
        let generation = self.nodes().connect(hello, sender);
        tracing::info!(node_id = %hello.node_id, build = %hello.build, version = hello.last_applied_version, "node connected");
        self.events().publish(
            "node_connected",
            json!({
                "node_id": hello.node_id,
                "build": hello.build,
                "last_applied_version": hello.last_applied_version,
            }),
        );
        generation
    }

    pub fn node_disconnected(&self, node_id: &str, generation: u64) {
        if self.nodes().disconnect(node_id, generation) {
            tracing::info!(%node_id, "node disconnected");
            self.events()
                .publish("node_disconnected", json!({ "node_id": node_id }));
        }
    }

    /// Records one message a node sent on its Sync stream.
    pub fn node_message(&self, node_id: &str, msg: node_message::Msg) {
        let nodes = self.nodes();
        match msg {
            node_message::Msg::Hello(_) => {
                nodes.touch(node_id);
                tracing::warn!(%node_id, "ignoring a second Hello on the same stream");
            }
            node_message::Msg::Ack(ack) => {
                nodes.ack(node_id, ack.version);
                tracing::info!(%node_id, version = ack.version, "snapshot acked");
                self.events().publish(
                    "snapshot_acked",
                    json!({ "node_id": node_id, "version": ack.version }),
                );
            }
            node_message::Msg::Nack(nack) => {
                tracing::warn!(%node_id, version = nack.version, error = %nack.error, "snapshot nacked");
                self.events().publish(
                    "snapshot_nacked",
                    json!({ "node_id": node_id, "version": nack.version, "error": nack.error }),
                );
                nodes.nack(node_id, nack.version, nack.error);
            }
            node_message::Msg::Metrics(report) => {
                self.metrics_hub().ingest(node_id, &report);
                nodes.metrics(node_id, report);
            }
            node_message::Msg::Event(event) => {
                nodes.touch(node_id);
                self.publish_node_event(node_id, event);
            }
            node_message::Msg::CommandResult(result) => nodes.command_result(node_id, result),
        }
    }

    fn publish_node_event(&self, node_id: &str, event: proto::NodeEvent) {
        let (kind, data) = match event.kind {
            Some(node_event::Kind::BackendHealthChanged(e)) => (
                "backend_health_changed",
                json!({ "node_id": node_id, "backend": e.backend, "server": e.server, "healthy": e.healthy, "reason": e.reason }),
            ),
            Some(node_event::Kind::CircuitStateChanged(e)) => (
                "circuit_state_changed",
                json!({ "node_id": node_id, "backend": e.backend, "server": e.server, "from": e.from, "to": e.to }),
            ),
            Some(node_event::Kind::ContentFetchFailed(e)) => (
                "content_fetch_failed",
                json!({ "node_id": node_id, "source": e.source, "error": e.error }),
            ),
            None => return,
        };
        self.events().publish(kind, data);
    }

    /// Sends a command to every connected node and collects each node's
    /// result until all answered or `timeout` passed.
    pub async fn send_command(
        &self,
        kind: proto::command::Kind,
        timeout: Duration,
    ) -> Vec<CommandOutcome> {
        let id = format!(
            "cmd-{}-{}",
            crate::time_util::now_unix_ms(),
            NEXT_COMMAND.fetch_add(1, Ordering::Relaxed)
        );
        let mut results = self.nodes().expect_results(&id);
        let message = proto::ControlMessage {
            msg: Some(proto::control_message::Msg::Command(proto::Command {
                id: id.clone(),
                kind: Some(kind),
            })),
        };
        let mut outcomes: Vec<CommandOutcome> = Vec::new();
        let mut waiting = Vec::new();
        for (node_id, sender) in self.nodes().connected() {
            // A full or closed stream counts as "not confirmed".
            if sender.try_send(Ok(message.clone())).is_ok() {
                waiting.push(node_id);
            } else {
                outcomes.push(unconfirmed(node_id, "the node's stream is closed or full"));
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some((node_id, result))) => {
                    if let Some(i) = waiting.iter().position(|n| *n == node_id) {
                        waiting.swap_remove(i);
                        outcomes.push(CommandOutcome {
                            node_id,
                            confirmed: true,
                            ok: result.ok,
                            error: (!result.error.is_empty()).then_some(result.error),
                            cleared_entries: result.cleared_entries,
                        });
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.nodes().forget_command(&id);
        outcomes.extend(
            waiting
                .into_iter()
                .map(|n| unconfirmed(n, "no answer before the timeout")),
        );
        outcomes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        outcomes
    }
}

impl Service {
    /// Clears one source's cache (NOT_FOUND for a source not in the
    /// config) or every cache on every connected node, and publishes a
    /// `cache_cleared` event with the tally.
    pub async fn clear_cache(
        &self,
        source: Option<String>,
    ) -> Result<CacheClearView, ServiceError> {
        if let Some(name) = &source {
            let known = self
                .current()
                .config
                .content_sources
                .iter()
                .any(|s| &s.name == name);
            if !known {
                return Err(ServiceError::not_found(format!(
                    "no content source named `{name}`"
                )));
            }
        }
        let kind = proto::command::Kind::ClearCache(proto::ClearCache {
            source: source.clone().unwrap_or_default(),
        });
        let nodes = self
            .send_command(kind, self.settings().command_timeout)
            .await;
        let confirmed = nodes.iter().filter(|n| n.confirmed && n.ok).count();
        self.events().publish(
            "cache_cleared",
            json!({
                "source": source,
                "nodes_total": nodes.len(),
                "nodes_confirmed": confirmed,
                "cleared_entries": nodes.iter().map(|n| n.cleared_entries).sum::<u64>(),
            }),
        );
        Ok(CacheClearView {
            source,
            nodes_total: nodes.len(),
            nodes_confirmed: confirmed,
            nodes,
        })
    }
}

fn unconfirmed(node_id: String, why: &str) -> CommandOutcome {
    CommandOutcome {
        node_id,
        confirmed: false,
        ok: false,
        error: Some(why.to_owned()),
        cleared_entries: 0,
    }
}
