//! File content sources: resolved strictly inside the content root (no `..`,
//! no percent-encoded sequences, no symlink escape), hashed with sha256 and indexed so data planes can
//! fetch them by hash.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use switchyard_shared::config::{Config, ContentKind};

use crate::error::Problem;

/// The folder file sources are read from.
#[derive(Debug, Clone)]
pub struct ContentRoot {
    root: PathBuf,
}

/// A hashed file, as the data planes will fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub sha256: String,
    pub size: u64,
    /// Canonical path inside the content root.
    pub path: PathBuf,
    /// Modification time when hashed, to notice edits cheaply.
    pub modified: Option<SystemTime>,
}

impl ContentRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolves a configured path to a canonical regular file inside the
    /// root. The error says why, for a `content_sources[i].file` problem.
    pub fn resolve(&self, configured: &str) -> Result<PathBuf, String> {
        if configured.is_empty() {
            return Err("the path is empty".to_owned());
        }
        if has_percent_escape(configured) {
            return Err(format!(
                "`{configured}` contains a percent-encoded sequence; content paths are literal file paths"
            ));
        }
        let rel = Path::new(configured);
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("`{configured}` must not contain `..`"));
        }
        let root = self.root.canonicalize().map_err(|e| {
            format!(
                "the content root `{}` is not accessible: {e}",
                self.root.display()
            )
        })?;
        // An absolute path is accepted only when it lies inside the root.
        let joined = if rel.is_absolute() {
            rel.to_path_buf()
        } else {
            root.join(rel)
        };
        let canonical = joined.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{configured}` does not exist in the content root")
            } else {
                format!("`{configured}` is not accessible: {e}")
            }
        })?;
        if !canonical.starts_with(&root) {
            return Err(format!(
                "`{configured}` resolves outside the content root `{}`",
                root.display()
            ));
        }
        if !canonical.is_file() {
            return Err(format!("`{configured}` is not a regular file"));
        }
        Ok(canonical)
    }

    /// Resolves and hashes every file source of `config`: source name ->
    /// blob, or every problem found (`content_sources[i].file: ...`).
    pub fn scan(&self, config: &Config) -> Result<BTreeMap<String, Blob>, Vec<Problem>> {
        let mut blobs = BTreeMap::new();
        let mut problems = Vec::new();
        for (i, source) in config.content_sources.iter().enumerate() {
            let Some(ContentKind::File(file)) = source.kind() else {
                continue;
            };
            let path = format!("content_sources[{i}].file");
            match self
                .resolve(file)
                .and_then(|p| hash_file(&p).map_err(|e| format!("cannot read `{file}`: {e}")))
            {
                Ok(blob) => {
                    blobs.insert(source.name.clone(), blob);
                }
                Err(message) => problems.push(Problem { path, message }),
            }
        }
        if problems.is_empty() {
            Ok(blobs)
        } else {
            Err(problems)
        }
    }
}

/// Whether `path` holds `%` followed by two hex digits. Nothing decodes
/// config paths, so such a name is at best a mistake (someone pasted a URL
/// path) and at worst an attempt to smuggle `..` or `/` past review.
fn has_percent_escape(path: &str) -> bool {
    path.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Hashes a file by streaming it (large files are never held in memory).
pub fn hash_file(path: &Path) -> std::io::Result<Blob> {
    let mut file = std::fs::File::open(path)?;
    let modified = file.metadata()?.modified().ok();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(Blob {
        sha256: hex::encode(hasher.finalize()),
        size,
        path: path.to_path_buf(),
        modified,
    })
}

/// sha256 -> blob for the content the current snapshot references.
#[derive(Debug, Default)]
pub struct BlobIndex {
    blobs: RwLock<HashMap<String, Blob>>,
}

impl BlobIndex {
    /// Replaces the index with the blobs of a new snapshot.
    pub fn replace(&self, blobs: impl IntoIterator<Item = Blob>) {
        let map = blobs.into_iter().map(|b| (b.sha256.clone(), b)).collect();
        // A poisoned lock only means a panic elsewhere; the map is still whole.
        *self.blobs.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    pub fn get(&self, sha256: &str) -> Option<Blob> {
        self.blobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned()
    }

    /// The blob for `sha256`, checked against the disk: when the file's size
    /// or modification time changed it is re-hashed, and a file whose content
    /// no longer matches is not served under the old hash.
    pub fn verified(&self, sha256: &str) -> Result<Blob, BlobError> {
        let blob = self.get(sha256).ok_or(BlobError::Unknown)?;
        let meta = std::fs::metadata(&blob.path).map_err(BlobError::Io)?;
        if meta.len() == blob.size && meta.modified().ok() == blob.modified {
            return Ok(blob);
        }
        let fresh = hash_file(&blob.path).map_err(BlobError::Io)?;
        if fresh.sha256 == blob.sha256 {
            // Touched but identical: remember the new mtime.
            self.blobs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(fresh.sha256.clone(), fresh.clone());
            Ok(fresh)
        } else {
            Err(BlobError::Changed)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no blob with this sha256 in the current snapshot")]
    Unknown,
    #[error("the file changed on disk since the snapshot was built; a new version will follow")]
    Changed,
    #[error("cannot read the blob: {0}")]
    Io(#[source] std::io::Error),
}
