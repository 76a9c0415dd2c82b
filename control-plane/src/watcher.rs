//! Watches the config file and the content root (notify) and feeds every
//! settled change through the one change path.
//!
//! Editors save in several ways: writing in place in several steps,
//! truncating then writing, or writing a temp file and renaming it over the
//! original. So the watcher looks at the config file's *directory*, matches
//! events by path, and waits for a short quiet period before acting; an
//! invalid intermediate state is rejected by validation (a `config_error`
//! event) and the next settled write is applied.
//!
//! A config-file event applies the file only when its bytes differ from the
//! last ones seen, so changes made through the API are not overwritten by a
//! file that did not change. A content event re-checks the *current* config
//! against the content root: a changed file source makes a new version.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::service::{ChangeMeta, Service};

/// Quiet time after the last event before acting.
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

    /// Marks the watcher as failed to start.
    pub fn failed(&self) {
        self.set(Self::FAILED);
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
    /// Paths whose changes are ours (the database), never a reason to act.
    pub ignore: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touched {
    Config,
    Content,
}

impl WatchPaths {
    /// What an event on `path` concerns, if anything.
    fn classify(&self, path: &Path) -> Option<Touched> {
        if self.ignore.iter().any(|i| path.starts_with(i)) {
            return None;
        }
        let config_dir = self.config.parent().unwrap_or(Path::new("."));
        let same_file = path.file_name() == self.config.file_name()
            && path.parent().is_some_and(|p| same_dir(p, config_dir));
        if same_file {
            Some(Touched::Config)
        } else if path.starts_with(&self.content_root) {
            Some(Touched::Content)
        } else {
            None
        }
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

/// sha256 of the config file's bytes, `None` when it cannot be read.
async fn file_digest(path: &Path) -> Option<[u8; 32]> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// Starts watching; acts on changes until `stop` turns true.
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
    let (tx, mut rx) = mpsc::unbounded_channel::<Touched>();
    let filter = paths.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                for touched in event.paths.iter().filter_map(|p| filter.classify(p)) {
                    // The receiver only goes away at shutdown.
                    let _ = tx.send(touched);
                }
            }
            Ok(_) => {}
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
    tracing::info!(
        config = %paths.config.display(),
        content_root = %paths.content_root.display(),
        "watching for changes"
    );

    Ok(tokio::spawn(async move {
        // Keep the watcher alive as long as the loop runs.
        let _watcher = watcher;
        // The file as `prepare` applied (or kept) it.
        let mut last_digest = file_digest(&paths.config).await;
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                got = rx.recv() => match got { Some(t) => t, None => break },
            };
            let config_touched = settle(&mut rx, first).await;
            let digest = if config_touched {
                file_digest(&paths.config).await
            } else {
                last_digest
            };
            let result = if digest != last_digest {
                last_digest = digest;
                service.reload_file("file").await
            } else {
                // Same file bytes: only content may have changed.
                service
                    .apply(ChangeMeta::new("file", "content_refresh"), |current| {
                        Ok(current.clone())
                    })
                    .await
            };
            match result {
                Ok(outcome) if outcome.changed => tracing::info!(
                    version = outcome.version,
                    summary = %outcome.summary,
                    "file change applied"
                ),
                Ok(_) => tracing::debug!("file event without a config change"),
                // reload_file already logged it and emitted `config_error`.
                Err(e) => tracing::debug!(error = %e, "file change rejected"),
            }
        }
        status.set(WatcherStatus::OFF);
    }))
}

/// Waits until no event has arrived for `DEBOUNCE` (at most `MAX_DELAY`);
/// says whether the config file itself was among the events.
async fn settle(rx: &mut mpsc::UnboundedReceiver<Touched>, first: Touched) -> bool {
    let mut config_touched = first == Touched::Config;
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => return config_touched,
            _ = tokio::time::sleep_until(deadline) => return config_touched,
            got = rx.recv() => match got {
                Some(t) => config_touched |= t == Touched::Config,
                None => return config_touched,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_config_content_and_ignored_paths() {
        let paths = WatchPaths {
            config: PathBuf::from("/etc/sy/switchyard.yaml"),
            content_root: PathBuf::from("/etc/sy"),
            ignore: vec![PathBuf::from("/etc/sy/data")],
        };
        let c = |p: &str| paths.classify(Path::new(p));
        assert_eq!(c("/etc/sy/switchyard.yaml"), Some(Touched::Config));
        assert_eq!(c("/etc/sy/pages/a.html"), Some(Touched::Content));
        assert_eq!(c("/etc/sy/switchyard.yaml.tmp~"), Some(Touched::Content));
        assert_eq!(c("/etc/sy/data/db"), None);
        assert_eq!(c("/var/other"), None);
    }
}
