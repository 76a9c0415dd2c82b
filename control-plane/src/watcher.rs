//! Watches the config file and the content root (notify) and feeds every
//! settled change through the one change path (`Service::reload_file`).
//!
//! Editors save in several ways: writing in place in several steps,
//! truncating then writing, or writing a temp file and renaming it over the
//! original. So the watcher looks at the config file's *directory*, matches
//! events by path, and waits for a short quiet period before reloading; an
//! invalid intermediate state is rejected by validation (a `config_error`
//! event) and the next settled write is applied.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::service::Service;

/// Quiet time after the last event before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A burst of events never delays a reload longer than this.
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Watcher state for `/api/health`.
#[derive(Debug, Default)]
pub struct WatcherStatus(AtomicU8);

impl WatcherStatus {
    const OFF: u8 = 0;
    const RUNNING: u8 = 1;
    const FAILED: u8 = 2;

    pub fn label(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::RUNNING => "ok",
            Self::FAILED => "failed",
            _ => "disabled",
        }
    }

    fn set(&self, v: u8) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchPaths {
    pub config: PathBuf,
    pub content_root: PathBuf,
    /// Paths whose changes are ours (the database), never a reason to reload.
    pub ignore: Vec<PathBuf>,
}

impl WatchPaths {
    /// Whether an event on `path` concerns the config or the content.
    fn relevant(&self, path: &Path) -> bool {
        let config_dir = self.config.parent().unwrap_or(Path::new("."));
        let same_file = path.file_name() == self.config.file_name()
            && path
                .parent()
                .map(|p| same_dir(p, config_dir))
                .unwrap_or(false);
        if self.ignore.iter().any(|i| path.starts_with(i)) {
            return false;
        }
        same_file || path.starts_with(&self.content_root)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

/// Starts watching; reloads run until `stop` turns true.
pub fn spawn(
    service: Service,
    paths: WatchPaths,
    status: Arc<WatcherStatus>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, WatchError> {
    let paths = WatchPaths {
        config: absolute(&paths.config),
        content_root: absolute(&paths.content_root),
        ignore: paths.ignore.iter().map(|p| absolute(p)).collect(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let filter = paths.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(event) => {
                let interesting = !matches!(event.kind, EventKind::Access(_))
                    && event.paths.iter().any(|p| filter.relevant(p));
                if interesting {
                    // The receiver only goes away at shutdown.
                    let _ = tx.send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        }
    })
    .map_err(|source| WatchError::Watch {
        path: paths.config.clone(),
        source,
    })?;
    let config_dir = paths
        .config
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let content_covers_config = paths.config.starts_with(&paths.content_root);
    if !content_covers_config {
        watcher
            .watch(&config_dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch {
                path: config_dir.clone(),
                source,
            })?;
    }
    if let Err(source) = watcher.watch(&paths.content_root, RecursiveMode::Recursive) {
        if content_covers_config {
            return Err(WatchError::Watch {
                path: paths.content_root.clone(),
                source,
            });
        }
        // A missing content root is not fatal: configs without file
        // sources do not need one.
        tracing::warn!(path = %paths.content_root.display(), error = %source, "content root not watched");
    }
    status.set(WatcherStatus::RUNNING);
    tracing::info!(config = %paths.config.display(), content_root = %paths.content_root.display(), "watching for changes");

    Ok(tokio::spawn(async move {
        // Keep the watcher alive as long as the loop runs.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                got = rx.recv() => if got.is_none() { break },
            }
            settle(&mut rx).await;
            match service.reload_file("file").await {
                Ok(outcome) if outcome.changed => {
                    tracing::info!(version = outcome.version, "config file change applied")
                }
                Ok(_) => tracing::debug!("file event without a config change"),
                // reload_file already logged it and emitted `config_error`.
                Err(e) => tracing::debug!(error = %e, "config file change rejected"),
            }
        }
        status.set(WatcherStatus::OFF);
    }))
}

/// Waits until no event has arrived for `DEBOUNCE` (at most `MAX_DELAY`).
async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE);
        tokio::select! {
            _ = quiet => return,
            _ = tokio::time::sleep_until(deadline) => return,
            got = rx.recv() => if got.is_none() { return },
        }
    }
}

impl WatcherStatus {
    /// Marks the watcher as failed to start (for `/api/health`).
    pub fn failed(&self) {
        self.set(Self::FAILED);
    }
}
