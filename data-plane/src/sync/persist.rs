//! Writing the last good snapshot to the cache folder, off the ack path.
//!
//! A node acks a version as soon as it serves it; this task then writes it
//! in the background, in an order that keeps the folder loadable at every
//! step: first the blobs the new version needs, then `snapshot.pb` (temp
//! file, fsync, rename, fsync of the folder), and only then the removal of
//! blobs it no longer needs. A crash at any point leaves either the
//! previous snapshot with all of its blobs or the new one with all of its.
//! When versions arrive faster than the disk takes them, only the latest
//! pending one is written. Shutdown writes what is pending before the task
//! ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prost::Message;
use switchyard_shared::convert::set_file_blobs;
use switchyard_shared::proto;
use tokio::sync::watch;

use crate::cache::{CacheError, DiskCache};
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshot;

/// The hand-over from the apply path to the writer task.
#[derive(Debug)]
pub struct PersistQueue {
    pending: watch::Sender<Option<Arc<Snapshot>>>,
    /// The version last written completely (0: none in this process).
    persisted: AtomicU64,
}

impl Default for PersistQueue {
    fn default() -> Self {
        Self {
            pending: watch::Sender::new(None),
            persisted: AtomicU64::new(0),
        }
    }
}

impl PersistQueue {
    /// Asks for `snapshot` to be written; replaces anything not yet started.
    pub fn submit(&self, snapshot: Arc<Snapshot>) {
        self.pending.send_replace(Some(snapshot));
    }

    /// The version last written to the cache folder by this process.
    pub fn persisted_version(&self) -> u64 {
        self.persisted.load(Relaxed)
    }
}

/// Writes submitted snapshots until `shutdown`, then the pending one.
pub async fn run(queue: Arc<PersistQueue>, cache: DiskCache, mut shutdown: Shutdown) {
    let mut rx = queue.pending.subscribe();
    let mut written: Option<(u64, String)> = None;
    let mut stopping = false;
    loop {
        let next = rx.borrow_and_update().clone();
        let fresh = next.filter(|s| written.as_ref() != Some(&(s.version, s.hash.clone())));
        if let Some(snapshot) = fresh {
            let (version, hash) = (snapshot.version, snapshot.hash.clone());
            let cache = cache.clone();
            let result = tokio::task::spawn_blocking(move || write(&cache, &snapshot)).await;
            match result {
                Ok(Ok(removed)) => {
                    tracing::debug!(version, removed, "persisted snapshot; pruned unused blobs");
                    queue.persisted.store(version, Relaxed);
                    written = Some((version, hash));
                }
                Ok(Err(e)) => tracing::warn!(version, error = %e, "cannot persist the snapshot"),
                Err(e) => tracing::warn!(version, error = %e, "snapshot persistence task failed"),
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            changed = rx.changed() => stopping = changed.is_err(),
            () = shutdown.wait() => stopping = true,
        }
    }
}

/// Blobs, then the snapshot, then pruning; returns how many blobs were
/// removed. Blocking.
fn write(cache: &DiskCache, snapshot: &Snapshot) -> Result<usize, CacheError> {
    for (sha256, data) in &snapshot.blobs {
        if !cache.has_blob(sha256, data.len() as u64)? {
            cache.write_blob(sha256, data)?;
        }
    }
    let mut config = proto::Config::from(&snapshot.config);
    set_file_blobs(&mut config, &snapshot.file_blobs);
    let encoded = proto::Snapshot {
        version: snapshot.version,
        hash: snapshot.hash.clone(),
        config: Some(config),
        encoded_config: None,
    }
    .encode_to_vec();
    cache.write_snapshot(&encoded)?;
    let keep: HashSet<&str> = snapshot.blobs.keys().map(String::as_str).collect();
    cache.retain_blobs(&keep)
}
