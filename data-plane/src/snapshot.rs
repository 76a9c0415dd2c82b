//! The applied configuration as request handling sees it: one immutable
//! [`Snapshot`] per version, held in a [`SnapshotCell`] that readers load
//! lock-free and the sync task replaces atomically.

mod build;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use switchyard_shared::convert::BlobRef;
use switchyard_shared::routing::RouteTable;
use switchyard_shared::Config;
use tokio::sync::watch;

use crate::backend::BackendRuntime;
use crate::content::ContentSet;
use crate::metrics::RuleMetrics;
use crate::proxy::headers::HeaderEdits;

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
    /// Aligned with `routes.rules()`; shared with the next snapshot where
    /// the rule and what it resolved are unchanged.
    pub(crate) rules: Vec<Arc<RuleRuntime>>,
    /// By backend name; reused by the next snapshot when unchanged.
    pub(crate) backends: HashMap<String, Arc<BackendRuntime>>,
    /// The blob of each file content source, by source name (the domain
    /// config does not carry digests; deltas and the cache need them).
    pub(crate) file_blobs: BTreeMap<String, BlobRef>,
    /// File blobs by sha256, reused by the next snapshot.
    pub(crate) blobs: HashMap<String, Bytes>,
    /// Every content source, ready to answer; unchanged sources (and their
    /// remote caches) are carried over to the next snapshot.
    pub(crate) content: Arc<ContentSet>,
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
    /// Edits on the request sent upstream (forward only).
    pub request_headers: HeaderEdits,
    /// Edits on every response of the rule.
    pub response_headers: HeaderEdits,
    /// Served when forwarding fails.
    pub fallback: Option<FallbackRuntime>,
    /// Find/replace on proxied response bodies.
    pub rewrite: Option<Arc<crate::content::rewrite::CompiledRewrite>>,
}

#[derive(Debug)]
pub(crate) enum RuleAction {
    Forward {
        backend: Arc<BackendRuntime>,
        strip_prefix: Option<String>,
        add_prefix: Option<String>,
    },
    Replace(Replacement),
}

/// A rule's fallback: the content (served like `replace`) and the
/// upstream statuses that trigger it besides failures.
#[derive(Debug)]
pub(crate) struct FallbackRuntime {
    pub content: Replacement,
    pub statuses: Vec<u16>,
}

/// An answer from a content source: the rule's status and extra headers
/// (which may override the source's content type) and the snapshot's
/// prepared content (ETag, 304, Range, HEAD, compression: see `content`).
#[derive(Debug)]
pub(crate) struct Replacement {
    pub source: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content: Arc<ContentSet>,
}

impl Replacement {
    /// The response a `replace` rule (or a fallback) answers with for a
    /// request with this method and these headers. Async: a remote source
    /// may need a fetch; a failing source falls back along its chain.
    pub async fn respond(
        &self,
        method: &http::Method,
        request_headers: &HeaderMap,
    ) -> http::Response<crate::proxy::body::ProxyBody> {
        self.content
            .serve(
                &self.source,
                self.status,
                &self.headers,
                method,
                request_headers,
            )
            .await
    }
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
