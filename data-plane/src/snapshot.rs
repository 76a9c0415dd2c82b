//! The applied configuration as request handling sees it: one immutable
//! [`Snapshot`] per version, held in a [`SnapshotCell`] that readers load
//! lock-free and the sync task replaces atomically.

mod build;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use switchyard_shared::routing::RouteTable;
use switchyard_shared::Config;
use tokio::sync::watch;

use crate::backend::BackendRuntime;
use crate::metrics::RuleMetrics;

pub use build::{build, SnapshotError, SnapshotInput};

/// Where the applied snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Received from the control plane in this process's lifetime.
    ControlPlane,
    /// Loaded from the cache folder at start (control plane not yet heard).
    Cached,
}

impl SnapshotSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotSource::ControlPlane => "control_plane",
            SnapshotSource::Cached => "cached",
        }
    }
}

/// One compiled config version with everything a request needs.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) version: u64,
    pub(crate) hash: String,
    pub(crate) source: SnapshotSource,
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    /// Aligned with `routes.rules()`.
    pub(crate) rules: Vec<RuleRuntime>,
    /// By backend name; reused by the next snapshot when unchanged.
    pub(crate) backends: HashMap<String, Arc<BackendRuntime>>,
    /// File blobs by sha256, reused by the next snapshot.
    pub(crate) blobs: HashMap<String, Bytes>,
}

impl Snapshot {
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn hash(&self) -> &str {
        &self.hash
    }
    pub fn source(&self) -> SnapshotSource {
        self.source
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// A rule's action, resolved against the snapshot's backends and content.
#[derive(Debug)]
pub(crate) struct RuleRuntime {
    pub action: RuleAction,
    pub metrics: Arc<RuleMetrics>,
}

#[derive(Debug)]
pub(crate) enum RuleAction {
    Forward {
        backend: Arc<BackendRuntime>,
        strip_prefix: Option<String>,
    },
    Replace(Replacement),
}

/// A ready-made response; answering clones the header map and the
/// reference-counted body.
#[derive(Debug)]
pub(crate) struct Replacement {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The current snapshot, readable without locks.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwapOption<Snapshot>,
    changes: watch::Sender<Option<Arc<Snapshot>>>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            changes: watch::Sender::new(None),
        }
    }
}

impl SnapshotCell {
    /// The current snapshot; the caller keeps it for as long as it needs
    /// (an in-flight request finishes on the version it started with).
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Makes `snapshot` current for every later request.
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.current.store(Some(snapshot.clone()));
        self.changes.send_replace(Some(snapshot));
    }

    /// Notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.changes.subscribe()
    }
}
