//! The cache of one remote content source: fresh for `ttl`, then refetched;
//! concurrent misses share one origin fetch (the fetch lock), and while the
//! origin fails a stale body is served for up to `stale_if_error` after it
//! expired. Failures are counted and reported as `content_fetch_failed`;
//! for a second after one, requests do not hit the failing origin again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use switchyard_shared::config::{RemotePolicy, RemoteSource};

use super::fetch::{FetchError, Fetcher};
use super::response::Prepared;
use super::SourceStats;
use crate::events::EventSink;

/// After a failed fetch the origin is left alone this long: requests get
/// the stale body (or the error) at once instead of each trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    prepared: Arc<Prepared>,
    fetched: Instant,
}

/// The last failed fetch, so requests that queued behind it share its
/// outcome instead of hitting a failing origin one after another.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    error: FetchError,
}

#[derive(Debug)]
pub struct RemoteCache {
    name: String,
    spec: RemoteSource,
    /// The configured type; `None`: the origin's, else guessed from the URL.
    content_type: Option<HeaderValue>,
    guessed_type: HeaderValue,
    fetcher: Fetcher,
    entry: Mutex<Option<Entry>>,
    failure: Mutex<Option<Failure>>,
    /// Held by the one request fetching from the origin.
    fetch_lock: tokio::sync::Mutex<()>,
    stats: Arc<SourceStats>,
    events: EventSink,
}

impl RemoteCache {
    pub fn new(
        name: &str,
        spec: &RemoteSource,
        policy: &RemotePolicy,
        content_type: Option<HeaderValue>,
        guessed_type: HeaderValue,
        stats: Arc<SourceStats>,
        events: EventSink,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            spec: spec.clone(),
            content_type,
            guessed_type,
            fetcher: Fetcher::new(spec, policy)?,
            entry: Mutex::new(None),
            failure: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            stats,
            events,
        })
    }

    /// The body to answer with: fresh from the cache, fetched, or stale
    /// within the `stale_if_error` bound while the origin fails.
    pub async fn get(&self) -> Result<Arc<Prepared>, FetchError> {
        let arrived = Instant::now();
        if let Some(p) = self.fresh() {
            self.stats.hits.fetch_add(1, Relaxed);
            return Ok(p);
        }
        self.stats.misses.fetch_add(1, Relaxed);
        let _fetching = self.fetch_lock.lock().await;
        // Someone else fetched (or failed) while this request waited.
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let recent = lock(&self.failure)
            .as_ref()
            .filter(|f| f.at >= arrived || f.at.elapsed() < RETRY_AFTER_FAILURE)
            .map(|f| f.error.clone());
        let error = match recent {
            Some(error) => error,
            None => match self.fetch().await {
                Ok(p) => return Ok(p),
                Err(error) => {
                    self.stats.fetch_errors.fetch_add(1, Relaxed);
                    tracing::warn!(source = %self.name, %error, "remote content fetch failed");
                    self.events
                        .content_fetch_failed(&self.name, error.to_string());
                    *lock(&self.failure) = Some(Failure {
                        at: Instant::now(),
                        error: error.clone(),
                    });
                    error
                }
            },
        };
        match self.stale() {
            Some(p) => {
                self.stats.stale_served.fetch_add(1, Relaxed);
                Ok(p)
            }
            None => Err(error),
        }
    }

    async fn fetch(&self) -> Result<Arc<Prepared>, FetchError> {
        let fetched = self.fetcher.fetch().await?;
        let content_type = self.content_type.clone().unwrap_or_else(|| {
            fetched
                .content_type
                .as_deref()
                .and_then(|ct| HeaderValue::from_str(ct).ok())
                .unwrap_or_else(|| self.guessed_type.clone())
        });
        let modified = fetched.last_modified.unwrap_or_else(SystemTime::now);
        let body = fetched.body;
        // Hashing and compressing are CPU work: off the runtime threads.
        let prepared = tokio::task::spawn_blocking(move || {
            Prepared::new(body, None, content_type, modified, true)
        })
        .await
        .map_err(|e| FetchError::Http {
            url: self.spec.url.clone(),
            reason: format!("preparing the body failed: {e}"),
        })?;
        let prepared = Arc::new(prepared);
        *lock(&self.entry) = Some(Entry {
            prepared: prepared.clone(),
            fetched: Instant::now(),
        });
        Ok(prepared)
    }

    fn fresh(&self) -> Option<Arc<Prepared>> {
        lock(&self.entry)
            .as_ref()
            .filter(|e| e.fetched.elapsed() < self.spec.ttl)
            .map(|e| e.prepared.clone())
    }

    fn stale(&self) -> Option<Arc<Prepared>> {
        let bound = self.spec.ttl.saturating_add(self.spec.stale_if_error);
        lock(&self.entry)
            .as_ref()
            .filter(|e| e.fetched.elapsed() < bound)
            .map(|e| e.prepared.clone())
    }

    /// Drops the cached body; returns how many entries were removed.
    pub fn clear(&self) -> u64 {
        *lock(&self.failure) = None;
        u64::from(lock(&self.entry).take().is_some())
    }

    /// (entries, bytes) held now.
    pub fn size(&self) -> (u64, u64) {
        lock(&self.entry)
            .as_ref()
            .map_or((0, 0), |e| (1, e.prepared.body.len() as u64))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
