//! The on-disk cache folder: the last good snapshot (proto bytes) and a
//! content-addressed blob store. Every write goes to a temporary file that
//! is synced and renamed into place, so a crash leaves the old or the new
//! file, never a torn one. All functions block; call them off the runtime.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use sha2::{Digest, Sha256};

const SNAPSHOT_FILE: &str = "snapshot.pb";
const BLOB_DIR: &str = "blobs";

/// Distinguishes temporary files written concurrently by one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why a cached file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("`{0}` is not a sha256 hex digest")]
    BadDigest(String),
    #[error("blob {sha256}: expected {expected} bytes with that digest, found {actual} bytes hashing to {actual_sha256}")]
    Mismatch {
        sha256: String,
        expected: u64,
        actual: u64,
        actual_sha256: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks that `data` is the blob `sha256` of `size` bytes.
pub fn verify_blob(sha256: &str, size: u64, data: &[u8]) -> Result<(), CacheError> {
    let actual_sha256 = sha256_hex(data);
    if actual_sha256 == sha256 && data.len() as u64 == size {
        Ok(())
    } else {
        Err(CacheError::Mismatch {
            sha256: sha256.to_owned(),
            expected: size,
            actual: data.len() as u64,
            actual_sha256,
        })
    }
}

/// The cache folder of one data plane.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// Opens (creating when needed) the cache folder.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        let blobs = dir.join(BLOB_DIR);
        fs::create_dir_all(&blobs).map_err(|source| CacheError::Io {
            path: blobs,
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted snapshot's bytes, if one was saved.
    pub fn read_snapshot(&self) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }

    /// Replaces the persisted snapshot atomically.
    pub fn write_snapshot(&self, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomic(&self.dir, SNAPSHOT_FILE, bytes)
    }

    /// A stored blob, verified against its digest and size. `None` when it
    /// is absent or corrupt (a corrupt file is removed so it is fetched
    /// again).
    pub fn read_blob(&self, sha256: &str, size: u64) -> Result<Option<Bytes>, CacheError> {
        let path = self.blob_path(sha256)?;
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        match verify_blob(sha256, size, &data) {
            Ok(()) => Ok(Some(Bytes::from(data))),
            Err(e) => {
                tracing::warn!(error = %e, "removing a corrupt cached blob");
                let _ = fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Whether a blob file of that digest and size is present (not read:
    /// loading verifies every blob anyway).
    pub fn has_blob(&self, sha256: &str, size: u64) -> Result<bool, CacheError> {
        let path = self.blob_path(sha256)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file() && m.len() == size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }

    /// Stores a blob under its digest (the caller has verified it).
    pub fn write_blob(&self, sha256: &str, data: &[u8]) -> Result<(), CacheError> {
        check_digest(sha256)?;
        write_atomic(&self.dir.join(BLOB_DIR), sha256, data)
    }

    /// Deletes every blob not in `keep`; returns how many were removed.
    pub fn retain_blobs(&self, keep: &HashSet<&str>) -> Result<usize, CacheError> {
        let dir = self.dir.join(BLOB_DIR);
        let io_err = |source| CacheError::Io {
            path: dir.clone(),
            source,
        };
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let keep_it = name.to_str().is_some_and(|n| keep.contains(n));
            if !keep_it && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn blob_path(&self, sha256: &str) -> Result<PathBuf, CacheError> {
        check_digest(sha256)?;
        Ok(self.dir.join(BLOB_DIR).join(sha256))
    }
}

/// Digests become file names, so only 64 lowercase hex characters pass.
fn check_digest(sha256: &str) -> Result<(), CacheError> {
    let ok = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CacheError::BadDigest(sha256.to_owned()))
    }
}

/// Writes `dir/name` via a synced temporary file and a rename.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), CacheError> {
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Relaxed)
    ));
    let target = dir.join(name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        // Persist the rename itself.
        fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        CacheError::Io {
            path: target,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, DiskCache) {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let cache = match DiskCache::open(dir.path().join("node")) {
            Ok(c) => c,
            Err(e) => panic!("open: {e}"),
        };
        (dir, cache)
    }

    #[test]
    fn blobs_round_trip_and_corrupt_ones_are_dropped() {
        let (_dir, cache) = cache();
        let data = b"hello blob";
        let sha = sha256_hex(data);
        assert!(matches!(cache.read_blob(&sha, 10), Ok(None)));
        assert!(matches!(cache.has_blob(&sha, 10), Ok(false)));
        assert!(cache.write_blob(&sha, data).is_ok());
        assert!(matches!(cache.has_blob(&sha, 10), Ok(true)));
        assert!(matches!(cache.has_blob(&sha, 11), Ok(false)));
        let read = cache.read_blob(&sha, 10).ok().flatten();
        assert_eq!(read.as_deref(), Some(&data[..]));

        // Corrupt the stored file: it is reported absent and removed.
        let path = cache.dir().join(BLOB_DIR).join(&sha);
        assert!(fs::write(&path, b"tampered!!").is_ok());
        assert!(matches!(cache.read_blob(&sha, 10), Ok(None)));
        assert!(!path.exists());
    }

    #[test]
    fn digests_that_are_not_hex_never_become_paths() {
        let (_dir, cache) = cache();
        assert!(matches!(
            cache.write_blob("../escape", b"x"),
            Err(CacheError::BadDigest(_))
        ));
        assert!(cache.read_blob(&"A".repeat(64), 1).is_err());
    }

    #[test]
    fn snapshot_is_replaced_atomically_and_no_temp_files_remain() {
        let (_dir, cache) = cache();
        assert!(matches!(cache.read_snapshot(), Ok(None)));
        assert!(cache.write_snapshot(b"one").is_ok());
        assert!(cache.write_snapshot(b"two").is_ok());
        assert_eq!(
            cache.read_snapshot().ok().flatten().as_deref(),
            Some(&b"two"[..])
        );
        let names: Vec<_> = fs::read_dir(cache.dir())
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 2, "{names:?}"); // snapshot.pb and blobs/
    }

    #[test]
    fn retain_blobs_removes_only_unreferenced_ones() {
        let (_dir, cache) = cache();
        let a = sha256_hex(b"a");
        let b = sha256_hex(b"b");
        assert!(cache.write_blob(&a, b"a").is_ok());
        assert!(cache.write_blob(&b, b"b").is_ok());
        let keep: HashSet<&str> = [a.as_str()].into_iter().collect();
        assert_eq!(cache.retain_blobs(&keep).ok(), Some(1));
        assert!(matches!(cache.read_blob(&a, 1), Ok(Some(_))));
        assert!(matches!(cache.read_blob(&b, 1), Ok(None)));
    }

    #[test]
    fn verify_blob_checks_digest_and_size() {
        let sha = sha256_hex(b"abc");
        assert!(verify_blob(&sha, 3, b"abc").is_ok());
        assert!(verify_blob(&sha, 4, b"abc").is_err());
        assert!(verify_blob(&sha, 3, b"abd").is_err());
    }
}
