//! One data plane's Sync stream: send the snapshot when the node is behind,
//! forward every new snapshot, record what the node says, and mark it
//! disconnected when the stream ends.

use std::sync::Arc;

use switchyard_shared::proto;
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::service::{Service, SnapshotData};

fn snapshot_message(s: &SnapshotData) -> proto::ControlMessage {
    proto::ControlMessage {
        msg: Some(proto::control_message::Msg::Snapshot(proto::Snapshot {
            version: s.version,
            hash: s.hash.clone(),
            config: Some(s.proto.clone()),
        })),
    }
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
    let behind = hello.last_applied_version != current.version || hello.hash != current.hash;
    let mut alive = true;
    if current.version > 0 && behind {
        alive = tx
            .send(Ok(snapshot_message(&current)))
            .instrument(
                tracing::info_span!("rollout.send", node_id = %node_id, version = current.version),
            )
            .await
            .is_ok();
    }
    while alive {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => {
                    if let Some(msg) = m.msg {
                        service.node_message(&node_id, msg);
                    }
                }
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
                alive = tx
                    .send(Ok(snapshot_message(&next)))
                    .instrument(tracing::info_span!("rollout.send", node_id = %node_id, version = next.version))
                    .await
                    .is_ok();
            }
            _ = tx.closed() => break,
            _ = stopping(&mut shutdown) => break,
        }
    }
    service.node_disconnected(&node_id, generation);
}

/// Resolves once shutdown starts (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
