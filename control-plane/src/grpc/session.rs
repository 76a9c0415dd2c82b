//! One data plane's Sync stream: send the snapshot when the node is behind,
//! forward every new version, record what the node says, and mark it
//! disconnected when the stream ends.
//!
//! A node that accepts deltas and is known to run the previous version gets
//! only the change (computed once per version, shared by every session);
//! otherwise, and whenever the node asks for a resync, the whole snapshot.

use std::sync::Arc;

use switchyard_shared::proto::{self, node_message};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::service::{Service, SnapshotData};

/// What this session may assume the node runs.
struct NodeBase {
    accepts_delta: bool,
    /// The version and hash the node runs, or will once it applies what
    /// was sent; `None` when unknown (after a NACK), which forces a whole
    /// snapshot next.
    base: Option<(u64, String)>,
}

impl NodeBase {
    /// The message that brings the node to `next`, and records that it
    /// will run it.
    fn message_for(&mut self, next: &SnapshotData) -> (proto::ControlMessage, &'static str) {
        let delta = match (&self.base, self.accepts_delta) {
            (Some((v, h)), true) => next.delta_message((*v, h)),
            _ => None,
        };
        self.base = Some((next.version, next.hash.clone()));
        match delta {
            Some(m) => (m, "delta"),
            None => (next.full_message(), "snapshot"),
        }
    }
}

async fn send(
    tx: &mpsc::Sender<Result<proto::ControlMessage, Status>>,
    node: &mut NodeBase,
    node_id: &str,
    next: &SnapshotData,
) -> bool {
    let (message, kind) = node.message_for(next);
    tx.send(Ok(message))
        .instrument(
            tracing::info_span!("rollout.send", node_id = %node_id, version = next.version, kind),
        )
        .await
        .is_ok()
}

pub(super) async fn run(
    service: Service,
    hello: proto::Hello,
    mut inbound: Streaming<proto::NodeMessage>,
    tx: mpsc::Sender<Result<proto::ControlMessage, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let node_id = hello.node_id.clone();
    let generation = service.node_connected(&hello, tx.clone());
    let mut snapshots = service.watch();
    let current: Arc<SnapshotData> = snapshots.borrow_and_update().clone();
    let mut node = NodeBase {
        accepts_delta: hello.accepts_delta,
        base: (hello.last_applied_version > 0).then_some((hello.last_applied_version, hello.hash)),
    };
    let behind = node.base.as_ref() != Some(&(current.version, current.hash.clone()));
    let mut alive = true;
    // The report being ingested, if any (reports are ingested in order).
    let mut ingest: Option<tokio::task::JoinHandle<()>> = None;
    if current.version > 0 && behind {
        alive = send(&tx, &mut node, &node_id, &current).await;
    }
    while alive {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => match m.msg {
                    Some(node_message::Msg::Nack(nack)) if nack.resync => {
                        // Not a rejection: the node missed the delta's base.
                        tracing::debug!(%node_id, version = nack.version, error = %nack.error, "node asks for a resync");
                        node.base = None;
                        let latest = snapshots.borrow_and_update().clone();
                        alive = send(&tx, &mut node, &node_id, &latest).await;
                    }
                    Some(node_message::Msg::Metrics(report)) => {
                        ingest = Some(ingest_report(&service, &node_id, report, ingest.take()));
                    }
                    Some(msg) => {
                        if matches!(msg, node_message::Msg::Nack(_)) {
                            // The node keeps whatever it ran before.
                            node.base = None;
                        }
                        service.node_message(&node_id, msg);
                    }
                    None => {}
                },
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%node_id, %status, "sync stream ended with an error");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = snapshots.borrow_and_update().clone();
                alive = send(&tx, &mut node, &node_id, &next).await;
            }
            _ = tx.closed() => break,
            _ = stopping(&mut shutdown) => break,
        }
    }
    service.node_disconnected(&node_id, generation);
}

/// Ingests a metrics report on the blocking pool, after `previous`: a
/// report of thousands of rules takes a while to fold in, and must not
/// hold up the acks on this stream or the runtime's other work.
fn ingest_report(
    service: &Service,
    node_id: &str,
    report: proto::MetricsReport,
    previous: Option<tokio::task::JoinHandle<()>>,
) -> tokio::task::JoinHandle<()> {
    let (service, node_id) = (service.clone(), node_id.to_owned());
    tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let ingested = tokio::task::spawn_blocking(move || {
            service.node_message(&node_id, node_message::Msg::Metrics(report));
        })
        .await;
        if let Err(e) = ingested {
            tracing::warn!(error = %e, "metrics report ingestion failed");
        }
    })
}

/// Resolves once shutdown starts (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
