//! Following the control plane: connect with backoff, open the `Sync`
//! stream, say Hello, apply snapshots (Ack/Nack), answer commands and send
//! metrics reports; reconnect the same way whenever the stream drops.

mod apply;
pub mod backoff;
mod persist;
mod report;

use std::sync::Arc;
use std::time::Duration;

use switchyard_shared::proto;
use switchyard_shared::proto::control_message::Msg as ControlMsg;
use switchyard_shared::proto::control_plane_client::ControlPlaneClient;
use switchyard_shared::proto::node_message::Msg as NodeMsg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::shutdown::Shutdown;
use crate::state::NodeState;
use backoff::Backoff;

pub use apply::load_cached;
pub use persist::{run as persist_run, PersistQueue};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Large configs (thousands of rules) exceed tonic's 4 MiB default.
const MAX_MESSAGE: usize = 256 << 20;

/// Why a session with the control plane ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("cannot connect: {}", crate::error::error_chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("sync stream failed: {}", .0.message())]
    Status(#[from] tonic::Status),
    #[error("the control plane closed the sync stream")]
    Closed,
}

/// Builds the gRPC endpoint (validating the URL) with keep-alives, so a
/// vanished control plane is noticed even when the stream is idle.
pub fn endpoint(url: &str) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// Runs until `shutdown`.
pub async fn run(
    state: Arc<NodeState>,
    endpoint: Endpoint,
    report_interval: Duration,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
    let mut failures: u64 = 0;
    let mut events = state
        .events_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    loop {
        let end = tokio::select! {
            end = session(&state, &endpoint, report_interval, &mut backoff, &mut events) => end,
            () = shutdown.wait() => return,
        };
        let was_connected = state.sync.connected();
        state.sync.set_disconnected(end.to_string());
        let delay = backoff.next_delay();
        failures = if was_connected { 0 } else { failures + 1 };
        if was_connected {
            tracing::warn!(error = %end, "lost the control plane; reconnecting");
        } else if failures % 30 == 1 {
            // The first failure and then about every minute, not every try.
            tracing::warn!(error = %end, control_plane = %state.control_plane, attempts = failures, "control plane not reachable; retrying with backoff");
        } else {
            tracing::debug!(error = %end, ?delay, control_plane = %state.control_plane, "control plane not reachable; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// One connection and stream; returns why it ended.
async fn session(
    state: &Arc<NodeState>,
    endpoint: &Endpoint,
    report_interval: Duration,
    backoff: &mut Backoff,
    events: &mut Option<mpsc::Receiver<proto::NodeEvent>>,
) -> SessionEnd {
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(e) => return e.into(),
    };
    let mut client = ControlPlaneClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<proto::NodeMessage>(16);
    let current = state.snapshots.load();
    let hello = proto::Hello {
        node_id: state.node_id.clone(),
        build: env!("CARGO_PKG_VERSION").to_owned(),
        last_applied_version: current.as_ref().map_or(0, |s| s.version()),
        hash: current
            .as_ref()
            .map(|s| s.hash().to_owned())
            .unwrap_or_default(),
        accepts_delta: true,
    };
    // The channel is empty, so this cannot wait.
    let _ = tx.try_send(node_message(NodeMsg::Hello(hello)));
    let mut inbound = match client.sync(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status.into(),
    };
    state.sync.set_connected();
    backoff.reset();
    tracing::info!(control_plane = %state.control_plane, node_id = %state.node_id, "connected to the control plane");

    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + report_interval,
        report_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reporting: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let reply = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => handle(state, &mut client, message).await,
                Ok(None) => return SessionEnd::Closed,
                Err(status) => return status.into(),
            },
            _ = ticker.tick() => {
                // Built off this loop: a report of thousands of rules takes
                // a while, and snapshots must not wait for it. One at a time.
                if reporting.as_ref().is_none_or(|r| r.is_finished()) {
                    reporting = Some(send_report(state, &tx));
                }
                None
            }
            event = next_event(events) => Some(NodeMsg::Event(event)),
        };
        if let Some(reply) = reply {
            if tx.send(node_message(reply)).await.is_err() {
                // The request stream is gone: the RPC is over.
                return SessionEnd::Closed;
            }
        }
    }
}

/// Builds the metrics report on the blocking pool and queues it.
fn send_report(
    state: &Arc<NodeState>,
    tx: &mpsc::Sender<proto::NodeMessage>,
) -> tokio::task::JoinHandle<()> {
    let (state, tx) = (state.clone(), tx.clone());
    tokio::spawn(async move {
        match tokio::task::spawn_blocking(move || report::metrics_report(&state)).await {
            Ok(report) => {
                // A closed channel means the session ended; the next one reports.
                let _ = tx.send(node_message(NodeMsg::Metrics(report))).await;
            }
            Err(e) => tracing::warn!(error = %e, "building the metrics report failed"),
        }
    })
}

/// The next queued node event; never resolves without a queue.
async fn next_event(events: &mut Option<mpsc::Receiver<proto::NodeEvent>>) -> proto::NodeEvent {
    match events {
        Some(rx) => match rx.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Handles one control message; returns the answer to send, if any.
async fn handle(
    state: &Arc<NodeState>,
    client: &mut ControlPlaneClient<Channel>,
    message: proto::ControlMessage,
) -> Option<NodeMsg> {
    match message.msg? {
        ControlMsg::Snapshot(snapshot) => {
            let version = snapshot.version;
            let result = apply::apply_from_control_plane(state, client, snapshot).await;
            Some(answer(version, "snapshot", result))
        }
        ControlMsg::Delta(delta) => {
            let version = delta.version;
            let result = apply::apply_delta(state, client, delta).await;
            Some(answer(version, "delta", result))
        }
        ControlMsg::Command(command) => Some(NodeMsg::CommandResult(run_command(state, command))),
    }
}

/// Ack, Nack, or a Nack asking for the whole snapshot.
fn answer(version: u64, kind: &'static str, result: Result<bool, apply::ApplyError>) -> NodeMsg {
    match result {
        Ok(changed) => {
            if changed {
                tracing::info!(version, kind, "applied snapshot");
            }
            NodeMsg::Ack(proto::Ack { version })
        }
        Err(e @ apply::ApplyError::BaseMismatch { .. }) => {
            tracing::info!(version, error = %e, "asking for the whole snapshot");
            NodeMsg::Nack(proto::Nack {
                version,
                error: e.to_string(),
                resync: true,
            })
        }
        Err(e) => {
            tracing::warn!(version, kind, error = %e, "rejected snapshot; keeping the current one");
            NodeMsg::Nack(proto::Nack {
                version,
                error: e.to_string(),
                resync: false,
            })
        }
    }
}

fn run_command(state: &NodeState, command: proto::Command) -> proto::CommandResult {
    match command.kind {
        // Remote sources hold the only caches (inline and file content is
        // part of the snapshot); an empty source clears them all.
        Some(proto::command::Kind::ClearCache(clear)) => {
            let source = (!clear.source.is_empty()).then_some(clear.source.as_str());
            let cleared = match state.snapshots.load() {
                Some(snapshot) => snapshot.content.clear(source),
                None => Ok(0),
            };
            tracing::info!(
                source = source.unwrap_or("*"),
                ?cleared,
                "content cache clear"
            );
            match cleared {
                Ok(n) => proto::CommandResult {
                    id: command.id,
                    ok: true,
                    error: String::new(),
                    cleared_entries: n,
                },
                Err(error) => proto::CommandResult {
                    id: command.id,
                    ok: false,
                    error,
                    cleared_entries: 0,
                },
            }
        }
        None => proto::CommandResult {
            id: command.id,
            ok: false,
            error: "unknown command".to_owned(),
            cleared_entries: 0,
        },
    }
}

fn node_message(msg: NodeMsg) -> proto::NodeMessage {
    proto::NodeMessage { msg: Some(msg) }
}
