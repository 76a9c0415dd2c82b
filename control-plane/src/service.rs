//! The one change path and the read model every API shares. Every change —
//! file load, REST, gRPC admin, rollback — goes through [`Service::apply`]:
//! validate -> (identical hash: no new version) -> next version -> one store
//! transaction -> publish the snapshot and an event.

mod diff;
mod explain;
mod fleet;
mod health;
mod reports;
mod rules;
mod snapshot;
#[cfg(test)]
mod tests;

pub use diff::Diff;
use diff::{content_summary, updated_sources};
pub use explain::{Explanation, SampleRequest};
pub use fleet::{CacheClearView, CommandOutcome};
pub use health::HealthView;
pub use reports::{CacheStatsReport, CacheStatsView, MetricsReportView, SourceView, StatusView};
pub use rules::{audit_action, Named, NamedOp, MAX_POSITION};
pub use snapshot::SnapshotData;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchyard_shared::config::Config;
use switchyard_shared::parse::{config_hash, parse_yaml};
use switchyard_shared::validate::validate_reusing;
use switchyard_shared::RuleReuse;
use tokio::sync::watch;

use crate::content::{Blob, BlobIndex, ContentRoot};
use crate::error::{ErrorCode, Problem, ServiceError};
use crate::events::EventBus;
use crate::nodes::NodeRegistry;
use crate::store::{AuditEntry, Commit, HistoryEntry, Store, StoredConfig};
use crate::time_util::now_unix_ms;

/// Tunables of the service layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The YAML file `reload` reads.
    pub config_path: PathBuf,
    pub content_root: PathBuf,
    /// Versions kept in history.
    pub history_limit: usize,
    /// How long a command fan-out waits for node confirmations.
    pub command_timeout: Duration,
}

/// Who asks for a change and how; recorded in the audit log.
#[derive(Debug, Clone)]
pub struct ChangeMeta {
    /// A token id, `file`, `api`, `grpc`...
    pub actor: String,
    /// `put_config`, `create_rule`, `file_reload`, `rollback`...
    pub action: &'static str,
    /// Optimistic concurrency: fail unless this is the current version.
    pub if_version: Option<u64>,
}

impl ChangeMeta {
    pub fn new(actor: impl Into<String>, action: &'static str) -> Self {
        Self {
            actor: actor.into(),
            action,
            if_version: None,
        }
    }

    pub fn if_version(mut self, v: Option<u64>) -> Self {
        self.if_version = v;
        self
    }
}

/// The answer to an accepted (or no-op) change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub version: u64,
    pub hash: String,
    /// False when the result was identical to the current config.
    pub changed: bool,
    pub summary: String,
}

/// A config that passed validation and whose file content was hashed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Config,
    pub blobs: BTreeMap<String, Blob>,
    pub hash: String,
}

/// The liveness of components that are not the store.
#[derive(Debug, Default)]
pub struct Components {
    pub grpc_serving: AtomicBool,
    pub api_serving: AtomicBool,
    pub file_watcher: Arc<crate::watcher::WatcherStatus>,
}

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    content: ContentRoot,
    blobs: BlobIndex,
    settings: Settings,
    /// Serialises changes: read current -> commit -> publish is one step.
    write_lock: tokio::sync::Mutex<()>,
    snapshot: watch::Sender<Arc<SnapshotData>>,
    events: EventBus,
    nodes: NodeRegistry,
    components: Components,
    /// The compiled routing table of the current version, for explain.
    tables: explain::TableCache,
    /// Flips to true when the servers start draining; long-lived streams
    /// (WebSocket, event watchers) end on it.
    stopping: watch::Sender<bool>,
    /// Fleet metrics: aggregates of the nodes' reports and their history.
    metrics: crate::metrics::MetricsHub,
    started: Instant,
}

/// The content hash of a version: the config's canonical hash, extended by
/// the hashes of the files it references so a changed file makes a new
/// version. Without file sources it equals `config_hash`.
pub fn version_hash(config: &Config, blobs: &BTreeMap<String, Blob>) -> String {
    let base = config_hash(config);
    if blobs.is_empty() {
        return base;
    }
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    for (name, blob) in blobs {
        h.update(format!("\n{name}={}", blob.sha256).as_bytes());
    }
    hex::encode(h.finalize())
}

impl Service {
    /// Builds the service around a store. The initial snapshot is the
    /// store's current config with its files hashed now (version 0 and an
    /// empty config for an empty store).
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Result<Self, ServiceError> {
        let content = ContentRoot::new(settings.content_root.clone());
        let initial = match store.current()? {
            Some(StoredConfig {
                version,
                hash,
                config,
            }) => {
                let blobs = content.scan(&config).map_err(ServiceError::invalid)?;
                SnapshotData::build(version, hash, config, blobs, None, false)
            }
            None => SnapshotData::build(
                0,
                String::new(),
                Config::default(),
                BTreeMap::new(),
                None,
                true,
            ),
        };
        let blobs = BlobIndex::default();
        blobs.replace(initial.blobs.values().cloned());
        let (snapshot, _) = watch::channel(Arc::new(initial));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                content,
                blobs,
                settings,
                write_lock: tokio::sync::Mutex::new(()),
                snapshot,
                events: EventBus::new(),
                nodes: NodeRegistry::default(),
                components: Components::default(),
                tables: explain::TableCache::default(),
                stopping: watch::channel(false).0,
                metrics: crate::metrics::MetricsHub::default(),
                started: Instant::now(),
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub fn nodes(&self) -> &NodeRegistry {
        &self.inner.nodes
    }

    pub fn blobs(&self) -> &BlobIndex {
        &self.inner.blobs
    }

    pub fn components(&self) -> &Components {
        &self.inner.components
    }

    pub fn content_root(&self) -> &ContentRoot {
        &self.inner.content
    }

    /// Tells long-lived streams to end (called when serving stops).
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once [`Service::begin_shutdown`] was called.
    pub async fn stopping(&self) {
        let mut rx = self.inner.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn table_cache(&self) -> &explain::TableCache {
        &self.inner.tables
    }

    pub fn metrics_hub(&self) -> &crate::metrics::MetricsHub {
        &self.inner.metrics
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<SnapshotData> {
        self.inner.snapshot.borrow().clone()
    }

    /// Follows the current snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<SnapshotData>> {
        self.inner.snapshot.subscribe()
    }

    /// Validation plus content checks, without changing anything. Rules
    /// identical to rules of the current (validated) config skip their
    /// self-contained checks, so a change of one rule among thousands does
    /// not recompile every regex.
    pub async fn check(&self, config: Config) -> Result<Checked, ServiceError> {
        let content = self.inner.content.clone();
        let current = self.current();
        run_blocking(move || {
            let reuse = if current.validated {
                RuleReuse::between(&current.config, &config)
            } else {
                RuleReuse::default()
            };
            check_config_reusing(&content, config, &reuse)
        })
        .await?
    }

    /// THE change path. `edit` derives the new config from the current one.
    pub async fn apply<F>(&self, meta: ChangeMeta, edit: F) -> Result<ChangeOutcome, ServiceError>
    where
        F: FnOnce(&Config) -> Result<Config, ServiceError>,
    {
        self.apply_inner(meta, None, edit).await
    }

    #[tracing::instrument(name = "config.change", skip_all, fields(actor = %meta.actor, action = meta.action))]
    async fn apply_inner<F>(
        &self,
        meta: ChangeMeta,
        file_hash: Option<String>,
        edit: F,
    ) -> Result<ChangeOutcome, ServiceError>
    where
        F: FnOnce(&Config) -> Result<Config, ServiceError>,
    {
        let _guard = self.inner.write_lock.lock().await;
        let started = Instant::now();
        let current = self.current();
        if let Some(expected) = meta.if_version {
            if expected != current.version {
                return Err(ServiceError::stale(expected, current.version));
            }
        }
        let proposed = edit(&current.config)?;
        let checked = self.check(proposed).await?;
        let checked_at = started.elapsed();
        if checked.hash == current.hash {
            if let Some(h) = file_hash {
                let store = self.inner.store.clone();
                run_blocking(move || store.set_last_file_hash(&h)).await??;
            }
            return Ok(ChangeOutcome {
                version: current.version,
                hash: current.hash.clone(),
                changed: false,
                summary: "no changes".to_owned(),
            });
        }
        let version = current.version + 1;
        let diff = Diff::between(&current.config, &checked.config);
        let diffed_at = started.elapsed();
        let summary = if diff.is_empty() {
            content_summary(&current.blobs, &checked.blobs)
        } else {
            diff.summary()
        };
        let now = now_unix_ms();
        let commit = Commit {
            current: StoredConfig {
                version,
                hash: checked.hash.clone(),
                config: checked.config.clone(),
            },
            history: HistoryEntry {
                version,
                hash: checked.hash.clone(),
                timestamp_unix_ms: now,
                actor: meta.actor.clone(),
                summary: summary.clone(),
                config: checked.config.clone(),
            },
            audit: AuditEntry {
                id: version,
                timestamp_unix_ms: now,
                actor: meta.actor.clone(),
                action: meta.action.to_owned(),
                from_version: current.version,
                to_version: version,
                summary: summary.clone(),
            },
            file_hash,
            history_limit: self.inner.settings.history_limit,
        };
        let store = self.inner.store.clone();
        run_blocking(move || store.commit(&commit)).await??;
        let committed_at = started.elapsed();

        let updated = updated_sources(&current, &checked);
        let snapshot = SnapshotData::build(
            version,
            checked.hash.clone(),
            checked.config,
            checked.blobs,
            Some(&current),
            true,
        );
        self.inner.blobs.replace(snapshot.blobs.values().cloned());
        self.inner.snapshot.send_replace(Arc::new(snapshot));
        // Where a write's time goes (validation, diff, sled, snapshot + delta).
        tracing::debug!(
            version,
            check = ?checked_at,
            diff = ?(diffed_at - checked_at),
            commit = ?(committed_at - diffed_at),
            publish = ?(started.elapsed() - committed_at),
            "change timings"
        );
        let kind = if meta.action.starts_with("file") {
            "config_reloaded"
        } else {
            "config_changed"
        };
        self.inner.events.publish(
            kind,
            serde_json::json!({
                "version": version,
                "from_version": current.version,
                "hash": checked.hash,
                "actor": meta.actor,
                "action": meta.action,
                "summary": summary,
            }),
        );
        if !updated.is_empty() {
            self.inner.events.publish(
                "content_updated",
                serde_json::json!({ "version": version, "sources": updated }),
            );
        }
        tracing::info!(version, actor = %meta.actor, action = meta.action, %summary, "config applied");
        Ok(ChangeOutcome {
            version,
            hash: checked.hash,
            changed: true,
            summary,
        })
    }

    /// Reads and parses the config file, checks it, and returns it with the
    /// hash recorded as "last applied file".
    async fn read_file(&self) -> Result<Checked, ServiceError> {
        let path = self.inner.settings.config_path.clone();
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
            ServiceError::new(
                ErrorCode::Unavailable,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let config = parse_yaml(&text).map_err(|e| {
            ServiceError::invalid(vec![Problem {
                path: String::new(),
                message: e.located(&path.display().to_string()),
            }])
        })?;
        self.check(config).await
    }

    /// Forces the config file in (`POST /api/config/reload`); on an invalid
    /// file the current config stays and a `config_error` event says why.
    pub async fn reload_file(&self, actor: &str) -> Result<ChangeOutcome, ServiceError> {
        let checked = match self.read_file().await {
            Ok(c) => c,
            Err(e) => {
                self.publish_config_error(&e);
                return Err(e);
            }
        };
        let hash = checked.hash.clone();
        self.apply_inner(
            ChangeMeta::new(actor, "file_reload"),
            Some(hash),
            move |_| Ok(checked.config),
        )
        .await
    }

    fn publish_config_error(&self, e: &ServiceError) {
        tracing::warn!(error = %e, problems = ?e.problems, "config file rejected; keeping the current config");
        self.inner.events.publish(
            "config_error",
            serde_json::json!({
                "source": self.inner.settings.config_path.display().to_string(),
                "message": e.message,
                "problems": e.problems,
            }),
        );
    }

    /// Startup semantics: an empty store loads the file as version 1; a store
    /// whose last applied file hash equals the file's keeps its state (API
    /// edits survive restarts); a changed file is applied as a new version.
    /// A kept state whose referenced files changed on disk gets a new
    /// version too.
    pub async fn load_on_start(&self, file: Checked) -> Result<ChangeOutcome, ServiceError> {
        let store = self.inner.store.clone();
        let last = run_blocking(move || store.last_file_hash()).await??;
        let current = self.current();
        if current.version > 0 && last.as_deref() == Some(file.hash.as_str()) {
            let config = (*current.config).clone();
            return self
                .apply(ChangeMeta::new("content", "content_refresh"), move |_| {
                    Ok(config)
                })
                .await;
        }
        let hash = file.hash.clone();
        self.apply_inner(
            ChangeMeta::new("file", "file_load"),
            Some(hash),
            move |_| Ok(file.config),
        )
        .await
    }

    /// Retained history, newest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, ServiceError> {
        let store = self.inner.store.clone();
        Ok(run_blocking(move || store.history()).await??)
    }

    pub async fn history_entry(&self, version: u64) -> Result<HistoryEntry, ServiceError> {
        let store = self.inner.store.clone();
        run_blocking(move || store.history_entry(version))
            .await??
            .ok_or_else(|| {
                ServiceError::not_found(format!("version {version} is not in the history"))
            })
    }

    /// Makes a new version equal to an old one.
    #[tracing::instrument(name = "config.rollback", skip_all, fields(to_version = version))]
    pub async fn rollback(
        &self,
        version: u64,
        meta: ChangeMeta,
    ) -> Result<ChangeOutcome, ServiceError> {
        let entry = self.history_entry(version).await?;
        self.apply(meta, move |_| Ok(entry.config)).await
    }

    pub async fn audit(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let store = self.inner.store.clone();
        Ok(run_blocking(move || store.audit(before, limit)).await??)
    }

    /// [`Service::audit`] with the API's bounds: `limit` 1..=1000
    /// (default 100), `before` within i64 (what the OpenAPI schema states).
    pub async fn audit_page(
        &self,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ServiceError::bad_request(
                "limit must be between 1 and 1000",
            ));
        }
        if before.is_some_and(|b| b > i64::MAX as u64) {
            return Err(ServiceError::bad_request("before is above the maximum"));
        }
        self.audit(before, limit).await
    }
}

/// Validation (every problem) plus the content-root checks of file sources.
pub fn check_config(content: &ContentRoot, config: Config) -> Result<Checked, ServiceError> {
    check_config_reusing(content, config, &RuleReuse::default())
}

/// [`check_config`] for a config derived from an already validated one.
pub fn check_config_reusing(
    content: &ContentRoot,
    config: Config,
    reuse: &RuleReuse,
) -> Result<Checked, ServiceError> {
    let mut problems: Vec<Problem> = match validate_reusing(&config, reuse) {
        Ok(()) => Vec::new(),
        Err(e) => e.problems.into_iter().map(Problem::from).collect(),
    };
    let blobs = match content.scan(&config) {
        Ok(b) => b,
        Err(more) => {
            problems.extend(more);
            BTreeMap::new()
        }
    };
    if !problems.is_empty() {
        return Err(ServiceError::invalid(problems));
    }
    let hash = version_hash(&config, &blobs);
    Ok(Checked {
        config,
        blobs,
        hash,
    })
}

/// Runs blocking work (disk, sled) off the async workers.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::internal(format!("background task failed: {e}")))
}

impl Components {
    pub fn set_grpc(&self, up: bool) {
        self.grpc_serving.store(up, Ordering::Relaxed);
    }
    pub fn set_api(&self, up: bool) {
        self.api_serving.store(up, Ordering::Relaxed);
    }
    pub fn grpc(&self) -> bool {
        self.grpc_serving.load(Ordering::Relaxed)
    }
    pub fn api(&self) -> bool {
        self.api_serving.load(Ordering::Relaxed)
    }
}
