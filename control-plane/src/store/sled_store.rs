//! The sled implementation of [`Store`]: three trees written together in one
//! multi-tree transaction, flushed before `commit` returns.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{AuditEntry, Commit, HistoryEntry, Store, StoreError, StoredConfig};

const KEY_CURRENT: &[u8] = b"current";
const KEY_FILE_HASH: &[u8] = b"file_hash";

pub struct SledStore {
    db: sled::Db,
    /// `current` and `file_hash`.
    meta: sled::Tree,
    /// Version (big-endian u64) -> [`HistoryEntry`].
    history: sled::Tree,
    /// Id (big-endian u64) -> [`AuditEntry`].
    audit: sled::Tree,
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        let meta = db.open_tree("meta")?;
        let history = db.open_tree("history")?;
        let audit = db.open_tree("audit")?;
        Ok(Self {
            db,
            meta,
            history,
            audit,
        })
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn version_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

impl Store for SledStore {
    fn current(&self) -> Result<Option<StoredConfig>, StoreError> {
        match self.meta.get(KEY_CURRENT)? {
            Some(bytes) => decode(KEY_CURRENT, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn last_file_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(KEY_FILE_HASH)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn set_last_file_hash(&self, hash: &str) -> Result<(), StoreError> {
        self.meta.insert(KEY_FILE_HASH, hash.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let current = encode(&commit.current)?;
        let history = encode(&commit.history)?;
        let audit = encode(&commit.audit)?;
        // Writes are serialised by the service, so the keys to prune can be
        // read before the transaction (sled transactions cannot iterate).
        let keep_from = commit
            .history
            .version
            .saturating_sub(commit.history_limit.max(1) as u64 - 1);
        let mut prune = Vec::new();
        for key in self.history.range(..version_key(keep_from)) {
            let (key, _) = key?;
            prune.push(key);
        }
        let file_hash = commit.file_hash.as_deref();
        let result: Result<(), TransactionError<()>> = (&self.meta, &self.history, &self.audit)
            .transaction(|(meta, hist, aud)| {
                meta.insert(KEY_CURRENT, current.as_slice())?;
                if let Some(h) = file_hash {
                    meta.insert(KEY_FILE_HASH, h.as_bytes())?;
                }
                hist.insert(&version_key(commit.history.version), history.as_slice())?;
                for key in &prune {
                    hist.remove(key)?;
                }
                aud.insert(&version_key(commit.audit.id), audit.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(StoreError::Backend(e)),
            Err(TransactionError::Abort(())) => {
                return Err(StoreError::Backend(sled::Error::Unsupported(
                    "transaction aborted".into(),
                )))
            }
        }
        self.db.flush()?;
        Ok(())
    }

    fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.history.iter().rev() {
            let (key, value) = item?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    fn history_entry(&self, version: u64) -> Result<Option<HistoryEntry>, StoreError> {
        let key = version_key(version);
        match self.history.get(key)? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let iter = match before {
            Some(b) => self.audit.range(..version_key(b)),
            None => self.audit.range::<&[u8], _>(..),
        };
        let mut out = Vec::new();
        for item in iter.rev().take(limit) {
            let (key, value) = item?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.meta.get(KEY_CURRENT)?;
        Ok(())
    }
}
