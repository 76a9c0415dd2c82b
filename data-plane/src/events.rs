//! Node events (backend health changes, ...) queued for the control plane.
//! Producers never wait: when the queue is full (control plane away for a
//! long time) new events are dropped and counted in the log.

use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_shared::proto;
use switchyard_shared::proto::node_event::Kind;
use tokio::sync::mpsc;

/// Events kept while the control plane is unreachable.
const QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub struct EventSink(mpsc::Sender<proto::NodeEvent>);

impl EventSink {
    pub fn channel() -> (EventSink, mpsc::Receiver<proto::NodeEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (EventSink(tx), rx)
    }

    pub fn backend_health(&self, backend: &str, server: &str, healthy: bool, reason: String) {
        self.send(Kind::BackendHealthChanged(proto::BackendHealthChanged {
            backend: backend.to_owned(),
            server: server.to_owned(),
            healthy,
            reason,
        }));
    }

    pub fn circuit_state(&self, backend: &str, server: &str, from: &str, to: &str) {
        self.send(Kind::CircuitStateChanged(proto::CircuitStateChanged {
            backend: backend.to_owned(),
            server: server.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        }));
    }

    /// A remote content source could not be fetched.
    pub fn content_fetch_failed(&self, source: &str, error: String) {
        self.send(Kind::ContentFetchFailed(proto::ContentFetchFailed {
            source: source.to_owned(),
            error,
        }));
    }

    fn send(&self, kind: Kind) {
        let event = proto::NodeEvent {
            timestamp_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            kind: Some(kind),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.0.try_send(event) {
            tracing::debug!("event queue full; dropping an event");
        }
    }
}
