//! What the tasks of one data plane share: the snapshot cell, counters,
//! the cache folder and the sync status shown by `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchyard_shared::proto;
use tokio::sync::mpsc;

use crate::cache::DiskCache;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::snapshot::SnapshotCell;
use crate::sync::PersistQueue;

#[derive(Debug)]
pub struct NodeState {
    pub node_id: String,
    /// The control plane URL, for messages.
    pub control_plane: String,
    pub snapshots: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub cache: DiskCache,
    /// Applied snapshots waiting to be written to `cache`.
    pub persist: Arc<PersistQueue>,
    pub sync: SyncStatus,
    pub started: Instant,
    /// Where backends report health changes.
    pub events: EventSink,
    /// The other end, taken by the sync task.
    pub events_rx: Mutex<Option<mpsc::Receiver<proto::NodeEvent>>>,
}

/// Whether the sync stream is up, and why it last failed.
#[derive(Debug, Default)]
pub struct SyncStatus {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl SyncStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    pub fn set_connected(&self) {
        self.connected.store(true, Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn set_disconnected(&self, error: String) {
        self.connected.store(false, Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
