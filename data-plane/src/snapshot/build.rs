//! Turns a domain config plus its file blobs into a [`Snapshot`]: compiles
//! the routing table, resolves every rule's action and reuses the runtime
//! state of unchanged backends from the previous snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use switchyard_shared::config::{Action, ContentKind};
use switchyard_shared::convert::BlobRef;
use switchyard_shared::routing::RouteTable;
use switchyard_shared::{Config, ValidationErrors};

use super::{Replacement, RuleAction, RuleRuntime, Snapshot, SnapshotSource};
use crate::backend::{BackendError, BackendRuntime};
use crate::events::EventSink;
use crate::metrics::Metrics;

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
}

/// Builds the snapshot; `previous` lends its unchanged backends.
pub fn build(
    input: SnapshotInput,
    previous: Option<&Snapshot>,
    metrics: &Metrics,
    events: &EventSink,
) -> Result<Snapshot, SnapshotError> {
    let routes = RouteTable::compile(&input.config)?;

    let mut backends = HashMap::with_capacity(input.config.backends.len());
    for spec in &input.config.backends {
        let reused = previous
            .and_then(|p| p.backends.get(&spec.name))
            .filter(|b| b.spec == *spec)
            .cloned();
        let runtime = match reused {
            Some(b) => b,
            None => Arc::new(BackendRuntime::new(spec, metrics, events)?),
        };
        backends.insert(spec.name.clone(), runtime);
    }

    let mut rules = Vec::with_capacity(routes.rules().len());
    for rule in routes.rules() {
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
            },
            Action::Replace(r) => RuleAction::Replace(
                replacement(&input, &r.source, r.status, &r.headers).map_err(rule_err)?,
            ),
        };
        rules.push(RuleRuntime {
            action,
            metrics: metrics.rule(&rule.name),
        });
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
        blobs,
    })
}

fn replacement(
    input: &SnapshotInput,
    source_name: &str,
    status: u16,
    headers: &BTreeMap<String, String>,
) -> Result<Replacement, String> {
    let source = input
        .config
        .content_sources
        .iter()
        .find(|s| s.name == source_name)
        .ok_or_else(|| format!("unknown content source `{source_name}`"))?;
    let body = match source.kind() {
        Some(ContentKind::Inline(text)) => Bytes::from(text.to_owned()),
        Some(ContentKind::File(path)) => {
            let blob = input.file_blobs.get(source_name).ok_or_else(|| {
                format!("content source `{source_name}` (file `{path}`) has no blob digest in the snapshot")
            })?;
            input.blobs.get(&blob.sha256).cloned().ok_or_else(|| {
                format!(
                    "content source `{source_name}`: blob {} is not available",
                    blob.sha256
                )
            })?
        }
        Some(ContentKind::Remote(_)) => {
            return Err(format!(
                "content source `{source_name}` is remote; this data plane does not fetch remote content yet"
            ))
        }
        None => return Err(format!("content source `{source_name}` has no content")),
    };
    let status =
        StatusCode::from_u16(status).map_err(|_| format!("status {status} is not valid"))?;
    let mut map = HeaderMap::with_capacity(headers.len() + 1);
    let content_type = source.effective_content_type();
    map.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .map_err(|_| format!("content type `{content_type}` is not a header value"))?,
    );
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}`: value is not a header value"))?;
        map.insert(name, value);
    }
    Ok(Replacement {
        status,
        headers: map,
        body,
    })
}

#[cfg(test)]
mod tests;
