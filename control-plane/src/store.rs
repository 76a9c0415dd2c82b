//! Persistence behind a small trait: the current config, its history, the
//! audit log and a little metadata. sled is the embedded default; a
//! replicated store (etcd, PostgreSQL) can implement the same trait.

mod sled_store;
#[cfg(test)]
mod tests;

pub use sled_store::SledStore;

use serde::{Deserialize, Serialize};
use switchyard_shared::config::Config;

/// The config that is live, with its version and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    pub version: u64,
    pub hash: String,
    pub config: Config,
}

/// One accepted version, kept for history and rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub hash: String,
    pub timestamp_unix_ms: u64,
    /// Who made the change: a token id, `file`, `api`, ...
    pub actor: String,
    pub summary: String,
    pub config: Config,
}

/// One line of the audit log: who changed what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Monotonic id; equal to `to_version` because only accepted changes
    /// are audited and each creates exactly one version.
    pub id: u64,
    pub timestamp_unix_ms: u64,
    pub actor: String,
    /// What kind of change (`put_config`, `create_rule`, `file_reload`...).
    pub action: String,
    pub from_version: u64,
    pub to_version: u64,
    pub summary: String,
}

/// Everything one accepted change writes, atomically.
#[derive(Debug, Clone)]
pub struct Commit {
    pub current: StoredConfig,
    pub history: HistoryEntry,
    pub audit: AuditEntry,
    /// Set when the change came from the config file: the hash of that file's
    /// content, so a restart with an unchanged file keeps API edits.
    pub file_hash: Option<String>,
    /// How many history versions to keep (older ones are pruned in the same
    /// transaction).
    pub history_limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("database error: {0}")]
    Backend(#[from] sled::Error),
    #[error("corrupt record `{key}`: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode a record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The storage contract the service layer relies on. Implementations must
/// make `commit` atomic and durable when it returns.
pub trait Store: Send + Sync + 'static {
    /// The live config, `None` for an empty database.
    fn current(&self) -> Result<Option<StoredConfig>, StoreError>;
    /// The hash of the config file content last applied from disk.
    fn last_file_hash(&self) -> Result<Option<String>, StoreError>;
    /// Records the file hash alone (a file identical to the live config).
    fn set_last_file_hash(&self, hash: &str) -> Result<(), StoreError>;
    /// Writes config, history entry, audit entry (and file hash) in one
    /// transaction and makes them durable.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;
    /// Retained history, newest first.
    fn history(&self) -> Result<Vec<HistoryEntry>, StoreError>;
    fn history_entry(&self, version: u64) -> Result<Option<HistoryEntry>, StoreError>;
    /// Audit entries with `id < before` (all when `None`), newest first.
    fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// A cheap liveness probe for `/api/health`.
    fn check(&self) -> Result<(), StoreError>;
}
