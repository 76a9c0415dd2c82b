//! Applying a snapshot: from the control plane (whole, or as a delta on top
//! of the running version; fetching the blobs it lacks) or from the cache
//! folder at start. Either the whole snapshot becomes current or nothing
//! changes. A new version is acked once it serves; it is written to the
//! cache folder right after, in the background (see `persist`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use switchyard_shared::convert::{file_blobs, BlobRef, ConvertError};
use switchyard_shared::delta::{self, DeltaError};
use switchyard_shared::proto;
use switchyard_shared::proto::control_plane_client::ControlPlaneClient;
use switchyard_shared::Config;
use tonic::transport::Channel;

use crate::cache::{verify_blob, CacheError};
use crate::snapshot::{build, Snapshot, SnapshotError, SnapshotInput, SnapshotSource};
use crate::state::NodeState;

/// A whole blob fetch may take this long.
const BLOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on the buffer reserved up front from an announced size.
const MAX_PREALLOC: usize = 16 << 20;

/// Why a snapshot was not applied (sent to the control plane in a NACK).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("snapshot {0} carries no config")]
    NoConfig(u64),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// Not the config's fault: the node asks for the whole snapshot.
    #[error("delta from version {base} does not apply: this node runs {running:?}")]
    BaseMismatch { base: u64, running: Option<u64> },
    #[error("content source `{source_name}`: {reason}")]
    Blob { source_name: String, reason: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot decode the cached snapshot: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("rejected by the fault switch {FAULT_REJECT_RULE_ENV}: the config has rule `{0}`")]
    InjectedFault(String),
}

/// Fault switch for tests of partial rollouts: a data plane started with
/// this variable set NACKs every snapshot that contains a rule of that name.
pub const FAULT_REJECT_RULE_ENV: &str = "SWITCHYARD_FAULT_REJECT_RULE";

fn check_fault_switch(config: &Config) -> Result<(), ApplyError> {
    match std::env::var(FAULT_REJECT_RULE_ENV) {
        Ok(name) if config.rules.iter().any(|r| r.name == name) => {
            Err(ApplyError::InjectedFault(name))
        }
        _ => Ok(()),
    }
}

/// Runs `f` on the blocking pool (conversions and builds are O(config)).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApplyError> + Send + 'static,
) -> Result<T, ApplyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApplyError::Internal(e.to_string()))?
}

/// Applies a whole snapshot received from the control plane. Returns
/// `false` when it was already the current one.
pub async fn apply_from_control_plane(
    state: &Arc<NodeState>,
    client: &mut ControlPlaneClient<Channel>,
    snap: proto::Snapshot,
) -> Result<bool, ApplyError> {
    let started = Instant::now();
    let current = state.snapshots.load();
    if let Some(c) = &current {
        if c.version == snap.version
            && c.hash == snap.hash
            && c.source == SnapshotSource::ControlPlane
        {
            return Ok(false);
        }
    }
    let (version, hash) = (snap.version, snap.hash);
    let proto_config = snap.config.ok_or(ApplyError::NoConfig(version))?;
    let (config, file_blobs) = blocking(move || {
        let file_blobs = file_blobs(&proto_config);
        Ok((Config::try_from(proto_config)?, file_blobs))
    })
    .await?;
    let incoming = Incoming {
        version,
        hash,
        config,
        file_blobs,
        started,
    };
    apply_config(state, client, current, incoming).await
}

/// Applies a delta on top of the running version; `BaseMismatch` when the
/// node does not run the delta's base.
pub async fn apply_delta(
    state: &Arc<NodeState>,
    client: &mut ControlPlaneClient<Channel>,
    delta: proto::SnapshotDelta,
) -> Result<bool, ApplyError> {
    let started = Instant::now();
    let current = state.snapshots.load();
    let base = current
        .clone()
        .filter(|c| c.version == delta.base_version && c.hash == delta.base_hash)
        .ok_or(ApplyError::BaseMismatch {
            base: delta.base_version,
            running: current.as_ref().map(|c| c.version),
        })?;
    let (version, hash) = (delta.version, delta.hash.clone());
    let (config, file_blobs) =
        blocking(move || Ok(delta::apply(&base.config, &base.file_blobs, delta)?)).await?;
    let incoming = Incoming {
        version,
        hash,
        config,
        file_blobs,
        started,
    };
    apply_config(state, client, current, incoming).await
}

/// A received version, converted to the domain model.
struct Incoming {
    version: u64,
    hash: String,
    config: Config,
    file_blobs: BTreeMap<String, BlobRef>,
    started: Instant,
}

/// Resolves the blobs, builds the snapshot (reusing what `current` has in
/// common with it), makes it current and queues it for the cache folder.
async fn apply_config(
    state: &Arc<NodeState>,
    client: &mut ControlPlaneClient<Channel>,
    current: Option<Arc<Snapshot>>,
    incoming: Incoming,
) -> Result<bool, ApplyError> {
    let Incoming {
        version,
        hash,
        config,
        file_blobs,
        started,
    } = incoming;
    check_fault_switch(&config)?;
    let converted = started.elapsed();

    let mut blobs = HashMap::new();
    for (source_name, blob) in &file_blobs {
        if blobs.contains_key(&blob.sha256) {
            continue;
        }
        let in_memory = current.as_ref().and_then(|c| c.blobs.get(&blob.sha256));
        let data = match in_memory {
            Some(data) => data.clone(),
            None => match read_blob(state, blob).await? {
                Some(data) => data,
                // Written to the cache folder with the snapshot.
                None => fetch_blob(client, source_name, blob).await?,
            },
        };
        blobs.insert(blob.sha256.clone(), data);
    }

    let input = SnapshotInput {
        version,
        hash,
        source: SnapshotSource::ControlPlane,
        config,
        file_blobs,
        blobs,
    };
    let (metrics, events) = (state.metrics.clone(), state.events.clone());
    let previous = current.clone();
    let snapshot =
        blocking(move || Ok(build(input, previous.as_deref(), &metrics, &events)?)).await?;
    let built = started.elapsed();
    let snapshot = Arc::new(snapshot);
    state.snapshots.store(snapshot.clone());
    state.persist.submit(snapshot);
    tracing::debug!(version, convert = ?converted, build = ?(built - converted), total = ?started.elapsed(), "applied");
    if let Some(old) = current {
        // Freeing thousands of rules takes a while; not before the ack.
        tokio::task::spawn_blocking(move || drop(old));
    }
    Ok(true)
}

/// Serves the last good snapshot from the cache folder, if it is present
/// and still valid (decodes, compiles, every blob present and verified).
/// Blocking; returns the applied snapshot.
pub fn load_cached(state: &NodeState) -> Result<Option<Arc<Snapshot>>, ApplyError> {
    let Some(bytes) = state.cache.read_snapshot()? else {
        return Ok(None);
    };
    let snap = proto::Snapshot::decode(bytes.as_slice())?;
    let proto_config = snap.config.ok_or(ApplyError::NoConfig(snap.version))?;
    let file_blobs = file_blobs(&proto_config);
    let config = Config::try_from(proto_config)?;
    let mut blobs = HashMap::new();
    for (source_name, blob) in &file_blobs {
        let data = state
            .cache
            .read_blob(&blob.sha256, blob.size)?
            .ok_or_else(|| ApplyError::Blob {
                source_name: source_name.clone(),
                reason: format!("blob {} is missing from the cache", blob.sha256),
            })?;
        blobs.insert(blob.sha256.clone(), data);
    }
    let input = SnapshotInput {
        version: snap.version,
        hash: snap.hash,
        source: SnapshotSource::Cached,
        config,
        file_blobs,
        blobs,
    };
    let snapshot = Arc::new(build(input, None, &state.metrics, &state.events)?);
    state.snapshots.store(snapshot.clone());
    Ok(Some(snapshot))
}

async fn read_blob(state: &NodeState, blob: &BlobRef) -> Result<Option<Bytes>, ApplyError> {
    let cache = state.cache.clone();
    let blob = blob.clone();
    tokio::task::spawn_blocking(move || cache.read_blob(&blob.sha256, blob.size))
        .await
        .map_err(|e| ApplyError::Internal(e.to_string()))?
        .map_err(ApplyError::from)
}

/// Fetches a blob through `FetchBlob`, bounded by its announced size and
/// verified against its digest.
async fn fetch_blob(
    client: &mut ControlPlaneClient<Channel>,
    source_name: &str,
    blob: &BlobRef,
) -> Result<Bytes, ApplyError> {
    let err = |reason: String| ApplyError::Blob {
        source_name: source_name.to_owned(),
        reason,
    };
    let fetch = async {
        let request = proto::FetchBlobRequest {
            sha256: blob.sha256.clone(),
        };
        let mut stream = client
            .fetch_blob(request)
            .await
            .map_err(|s| err(format!("fetching blob {}: {}", blob.sha256, s.message())))?
            .into_inner();
        let limit = usize::try_from(blob.size).unwrap_or(usize::MAX);
        let mut buf = BytesMut::with_capacity(limit.min(MAX_PREALLOC));
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| err(format!("fetching blob {}: {}", blob.sha256, s.message())))?
        {
            if buf.len() + chunk.data.len() > limit {
                return Err(err(format!(
                    "blob {} is larger than its announced {} bytes",
                    blob.sha256, blob.size
                )));
            }
            buf.extend_from_slice(&chunk.data);
        }
        verify_blob(&blob.sha256, blob.size, &buf).map_err(|e| err(e.to_string()))?;
        Ok(buf.freeze())
    };
    tokio::time::timeout(BLOB_TIMEOUT, fetch)
        .await
        .map_err(|_| err(format!("fetching blob {} timed out", blob.sha256)))?
}
