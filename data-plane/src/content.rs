//! Content sources as the data plane serves them: a [`ContentSet`] per
//! snapshot holds every source ready to answer (inline and file bodies
//! prepared once, remote sources behind their cache), and
//! [`ContentSet::serve`] answers a request from a named source, following
//! the source's fallback chain when it fails.
//!
//! - `response`: ETag, Last-Modified, 304, Range, HEAD, gzip/brotli.
//! - `remote`, `fetch`: the TTL cache and the policy-checked fetcher.
//! - `rewrite`: streamed find/replace on proxied response bodies.
//!
//! A source whose definition is unchanged in a new snapshot keeps its
//! runtime (cache, stats, Last-Modified); a changed one starts afresh.

pub mod compress;
pub mod fetch;
pub mod remote;
pub mod response;
pub mod rewrite;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use switchyard_shared::config::{ContentKind, ContentSource, RemotePolicy};
use switchyard_shared::convert::BlobRef;
use switchyard_shared::proto;

use crate::events::EventSink;
use crate::proxy::body::ProxyBody;
use crate::proxy::error::text_response;
use remote::RemoteCache;
use response::Prepared;

/// Fallback chains longer than this are cut (validation forbids loops).
const MAX_FALLBACK_HOPS: usize = 8;

/// Counters of one source, cumulative while its definition is unchanged.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Answers from content held in memory (inline, file, fresh remote).
    pub hits: AtomicU64,
    /// Remote requests that found no fresh body.
    pub misses: AtomicU64,
    pub stale_served: AtomicU64,
    pub fetch_errors: AtomicU64,
}

/// One source, ready to answer.
#[derive(Debug)]
pub struct SourceRuntime {
    /// The definition it was built from (plus what else it depends on),
    /// compared to decide whether the next snapshot may reuse it.
    key: SourceKey,
    kind: SourceKind,
    fallback: Option<String>,
    stats: Arc<SourceStats>,
}

#[derive(Debug, PartialEq, Eq)]
struct SourceKey {
    spec: ContentSource,
    /// File sources: the blob digest (the file may change, the name not).
    sha256: Option<String>,
    /// Remote sources: the address policy.
    policy: Option<RemotePolicy>,
}

#[derive(Debug)]
enum SourceKind {
    Static(Arc<Prepared>),
    Remote(Box<RemoteCache>),
}

/// Every content source of one snapshot, by name.
#[derive(Debug, Default)]
pub struct ContentSet {
    sources: HashMap<String, Arc<SourceRuntime>>,
}

/// Why the content of a snapshot could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("content source `{source_name}`: {reason}")]
pub struct ContentError {
    pub source_name: String,
    pub reason: String,
}

impl ContentSet {
    /// Prepares every source of `config` (blocking: hashes and compresses
    /// new inline bodies); unchanged sources of `previous` are reused.
    pub fn build(
        sources: &[ContentSource],
        policy: &RemotePolicy,
        file_blobs: &BTreeMap<String, BlobRef>,
        blobs: &HashMap<String, Bytes>,
        previous: Option<&ContentSet>,
        events: &EventSink,
    ) -> Result<ContentSet, ContentError> {
        let now = SystemTime::now();
        let mut out = HashMap::with_capacity(sources.len());
        for source in sources {
            let err = |reason: String| ContentError {
                source_name: source.name.clone(),
                reason,
            };
            let kind = source
                .kind()
                .ok_or_else(|| err("sets none or several of file, inline, remote".into()))?;
            let key = SourceKey {
                spec: source.clone(),
                sha256: file_blobs.get(&source.name).map(|b| b.sha256.clone()),
                policy: matches!(kind, ContentKind::Remote(_)).then(|| policy.clone()),
            };
            if let Some(reused) = previous
                .and_then(|p| p.sources.get(&source.name))
                .filter(|r| r.key == key)
            {
                out.insert(source.name.clone(), reused.clone());
                continue;
            }
            let content_type = HeaderValue::from_str(&source.effective_content_type())
                .map_err(|_| err("the content type is not a header value".into()))?;
            let stats = Arc::new(SourceStats::default());
            let kind = match kind {
                ContentKind::Inline(text) => SourceKind::Static(Arc::new(Prepared::new(
                    Bytes::from(text.to_owned()),
                    None,
                    content_type,
                    now,
                    false,
                ))),
                ContentKind::File(path) => {
                    let blob = file_blobs.get(&source.name).ok_or_else(|| {
                        err(format!("file `{path}` has no blob digest in the snapshot"))
                    })?;
                    let body = blobs
                        .get(&blob.sha256)
                        .cloned()
                        .ok_or_else(|| err(format!("blob {} is not available", blob.sha256)))?;
                    SourceKind::Static(Arc::new(Prepared::new(
                        body,
                        Some(blob.sha256.clone()),
                        content_type,
                        now,
                        true,
                    )))
                }
                ContentKind::Remote(spec) => {
                    let configured = source
                        .content_type
                        .as_deref()
                        .and_then(|ct| HeaderValue::from_str(ct).ok());
                    SourceKind::Remote(Box::new(
                        RemoteCache::new(
                            &source.name,
                            spec,
                            policy,
                            configured,
                            content_type,
                            stats.clone(),
                            events.clone(),
                        )
                        .map_err(err)?,
                    ))
                }
            };
            out.insert(
                source.name.clone(),
                Arc::new(SourceRuntime {
                    key,
                    kind,
                    fallback: source.fallback.clone(),
                    stats,
                }),
            );
        }
        Ok(ContentSet { sources: out })
    }

    /// Answers a request from source `name` with the rule's `status` and
    /// extra `headers`: the one entry point for `replace` rules and for
    /// rule fallbacks. When the source fails (a remote origin down with
    /// nothing stale to serve), its `fallback` source answers instead;
    /// when the whole chain fails the answer is a 502.
    pub async fn serve(
        &self,
        name: &str,
        status: StatusCode,
        headers: &HeaderMap,
        method: &Method,
        request_headers: &HeaderMap,
    ) -> Response<ProxyBody> {
        let mut current = name;
        let mut errors = Vec::new();
        for _ in 0..MAX_FALLBACK_HOPS {
            let Some(source) = self.sources.get(current) else {
                errors.push(format!("no content source named `{current}`"));
                break;
            };
            match source.body().await {
                Ok(prepared) => {
                    return response::respond(&prepared, status, headers, method, request_headers)
                }
                Err(e) => errors.push(format!("`{current}`: {e}")),
            }
            match &source.fallback {
                Some(next) => current = next,
                None => break,
            }
        }
        tracing::warn!(source = name, errors = %errors.join("; "), "content unavailable");
        text_response(
            StatusCode::BAD_GATEWAY,
            "content-unavailable",
            format!("bad gateway: content source `{name}` is unavailable\n"),
        )
    }

    /// Clears the cache of one source (or all when `None`); returns the
    /// entries removed. Inline and file sources hold no cache.
    pub fn clear(&self, name: Option<&str>) -> Result<u64, String> {
        match name {
            Some(name) => self
                .sources
                .get(name)
                .map(|s| s.clear())
                .ok_or_else(|| format!("no content source named `{name}`")),
            None => Ok(self.sources.values().map(|s| s.clear()).sum()),
        }
    }

    /// Per-source statistics for the metrics report, sorted by name.
    pub fn stats(&self) -> Vec<proto::CacheStats> {
        let mut out: Vec<proto::CacheStats> = self
            .sources
            .iter()
            .map(|(name, s)| {
                let (entries, bytes) = match &s.kind {
                    SourceKind::Static(p) => (1, p.body.len() as u64),
                    SourceKind::Remote(r) => r.size(),
                };
                proto::CacheStats {
                    source: name.clone(),
                    entries,
                    bytes,
                    hits: s.stats.hits.load(Relaxed),
                    misses: s.stats.misses.load(Relaxed),
                    stale_served: s.stats.stale_served.load(Relaxed),
                    fetch_errors: s.stats.fetch_errors.load(Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    /// Whether `name` is a source of this set.
    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Whether `a` and `b` share the same runtime (tests of reuse).
    #[cfg(test)]
    pub fn same_runtime(a: &ContentSet, b: &ContentSet, name: &str) -> bool {
        match (a.sources.get(name), b.sources.get(name)) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }
}

impl SourceRuntime {
    async fn body(&self) -> Result<Arc<Prepared>, fetch::FetchError> {
        match &self.kind {
            SourceKind::Static(p) => {
                self.stats.hits.fetch_add(1, Relaxed);
                Ok(p.clone())
            }
            // Boxed: the fetch future is large, and every request future
            // that can reach it would otherwise carry (and move) its size.
            SourceKind::Remote(cache) => Box::pin(cache.get()).await,
        }
    }

    fn clear(&self) -> u64 {
        match &self.kind {
            SourceKind::Static(_) => 0,
            SourceKind::Remote(cache) => cache.clear(),
        }
    }
}

#[cfg(test)]
mod tests;
