//! Turns a domain config plus its file blobs into a [`Snapshot`]: compiles
//! the routing table, resolves every rule's action and reuses what did not
//! change from the previous snapshot: backends (with their runtime state),
//! the content set, and each unchanged rule's compiled matcher and
//! resolved action. A change of one rule among thousands validates and
//! compiles that rule only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use switchyard_shared::config::Action;
use switchyard_shared::convert::BlobRef;
use switchyard_shared::routing::RouteTable;
use switchyard_shared::{Config, RuleReuse, ValidationErrors};

use super::{FallbackRuntime, Replacement, RuleAction, RuleRuntime, Snapshot, SnapshotSource};
use crate::backend::{BackendError, BackendRuntime};
use crate::content::rewrite::CompiledRewrite;
use crate::content::{ContentError, ContentSet};
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::proxy::headers::HeaderEdits;

/// Everything a snapshot is built from.
#[derive(Debug)]
pub struct SnapshotInput {
    pub version: u64,
    pub hash: String,
    pub source: SnapshotSource,
    pub config: Config,
    /// The blob each file content source refers to, by source name.
    pub file_blobs: BTreeMap<String, BlobRef>,
    /// Verified blob contents by sha256.
    pub blobs: HashMap<String, Bytes>,
}

/// Why a config could not become a snapshot (the node NACKs with this).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid config:\n{0}")]
    Invalid(#[from] ValidationErrors),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("rule `{rule}`: {reason}")]
    Rule { rule: String, reason: String },
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// Builds the snapshot; `previous` lends its unchanged backends.
pub fn build(
    input: SnapshotInput,
    previous: Option<&Snapshot>,
    metrics: &Metrics,
    events: &EventSink,
) -> Result<Snapshot, SnapshotError> {
    let reuse = previous.map_or_else(RuleReuse::default, |p| {
        RuleReuse::between(&p.config, &input.config)
    });
    let routes = RouteTable::compile_reusing(&input.config, previous.map(|p| &p.routes), &reuse)?;

    let mut backends = HashMap::with_capacity(input.config.backends.len());
    for spec in &input.config.backends {
        let old = previous.and_then(|p| p.backends.get(&spec.name));
        let reused = old.filter(|b| b.spec == *spec).cloned();
        let runtime = match reused {
            Some(b) => b,
            None => {
                let b = Arc::new(BackendRuntime::new(
                    spec,
                    metrics,
                    events,
                    old.map(|o| &**o),
                )?);
                b.start_health_checks();
                b
            }
        };
        backends.insert(spec.name.clone(), runtime);
    }

    // The same sources, policy and blobs: the same content set, so rules
    // that answer from it can be kept as they are.
    let same_content = previous.filter(|p| {
        p.config.content_sources == input.config.content_sources
            && p.config.remote_content == input.config.remote_content
            && p.file_blobs == input.file_blobs
    });
    let content = match same_content {
        Some(p) => p.content.clone(),
        None => Arc::new(ContentSet::build(
            &input.config.content_sources,
            &input.config.remote_content,
            &input.file_blobs,
            &input.blobs,
            previous.map(|p| &*p.content),
            events,
        )?),
    };

    // Compiled rules keep config order.
    let mut rewrites = input.config.rules.iter().map(|r| r.rewrite_body.as_ref());
    let mut specs = input.config.rules.iter();
    let mut rules = Vec::with_capacity(routes.rules().len());
    for (i, rule) in routes.rules().iter().enumerate() {
        let spec = specs.next();
        let rewrite = rewrites.next().flatten();
        let kept = previous
            .zip(reuse.previous(i))
            .and_then(|(p, j)| p.rules.get(j))
            .filter(|r| r.depends_only_on(&backends, &content));
        if let Some(kept) = kept {
            rules.push(kept.clone());
            continue;
        }
        let no_edits = switchyard_shared::config::HeaderEdits::default();
        let rule_err = |reason: String| SnapshotError::Rule {
            rule: rule.name.clone(),
            reason,
        };
        let action = match &rule.action {
            Action::Forward(f) => RuleAction::Forward {
                backend: backends
                    .get(&f.backend)
                    .cloned()
                    .ok_or_else(|| rule_err(format!("unknown backend `{}`", f.backend)))?,
                strip_prefix: f.strip_prefix.clone().filter(|p| p != "/"),
                add_prefix: f.add_prefix.clone().filter(|p| !p.is_empty() && p != "/"),
            },
            Action::Replace(r) => RuleAction::Replace(
                replacement(&content, &r.source, r.status, &r.headers).map_err(rule_err)?,
            ),
        };
        // The fallback is built exactly like a `replace` answer.
        let fallback = match spec.and_then(|s| s.fallback.as_ref()) {
            Some(f) => Some(FallbackRuntime {
                content: replacement(&content, &f.source, f.status, &BTreeMap::new())
                    .map_err(|e| rule_err(format!("fallback: {e}")))?,
                statuses: f.statuses.clone(),
            }),
            None => None,
        };
        rules.push(Arc::new(RuleRuntime {
            action,
            metrics: metrics.rule(&rule.name),
            request_headers: HeaderEdits::compile(spec.map_or(&no_edits, |s| &s.request_headers))
                .map_err(|e| rule_err(format!("request_headers: {e}")))?,
            response_headers: HeaderEdits::compile(spec.map_or(&no_edits, |s| &s.response_headers))
                .map_err(|e| rule_err(format!("response_headers: {e}")))?,
            fallback,
            rewrite: match rewrite {
                Some(spec) => Some(Arc::new(
                    CompiledRewrite::compile(spec)
                        .map_err(|e| rule_err(format!("rewrite_body: {e}")))?,
                )),
                None => None,
            },
        }));
    }

    // Keep only the blobs this version refers to.
    let mut blobs = input.blobs;
    blobs.retain(|sha, _| input.file_blobs.values().any(|b| &b.sha256 == sha));

    Ok(Snapshot {
        version: input.version,
        hash: input.hash,
        source: input.source,
        config: input.config,
        routes,
        rules,
        backends,
        file_blobs: input.file_blobs,
        blobs,
        content,
    })
}

impl RuleRuntime {
    /// Whether every backend and content set this rule resolved is the
    /// very one `backends` and `content` hold, so it can be kept as is.
    fn depends_only_on(
        &self,
        backends: &HashMap<String, Arc<BackendRuntime>>,
        content: &Arc<ContentSet>,
    ) -> bool {
        let action_ok = match &self.action {
            RuleAction::Forward { backend, .. } => backends
                .get(&backend.spec.name)
                .is_some_and(|b| Arc::ptr_eq(b, backend)),
            RuleAction::Replace(r) => Arc::ptr_eq(&r.content, content),
        };
        action_ok
            && self
                .fallback
                .as_ref()
                .is_none_or(|f| Arc::ptr_eq(&f.content.content, content))
    }
}

/// A rule's answer from content source `source_name` of `content`.
fn replacement(
    content: &Arc<ContentSet>,
    source_name: &str,
    status: u16,
    headers: &BTreeMap<String, String>,
) -> Result<Replacement, String> {
    if !content.contains(source_name) {
        return Err(format!("unknown content source `{source_name}`"));
    }
    let status =
        StatusCode::from_u16(status).map_err(|_| format!("status {status} is not valid"))?;
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}`: value is not a header value"))?;
        map.insert(name, value);
    }
    Ok(Replacement {
        source: source_name.to_owned(),
        status,
        headers: map,
        content: content.clone(),
    })
}

#[cfg(test)]
mod tests;
