//! Handlers for the config as a whole and its rules.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_shared::config::Rule;
use switchyard_shared::parse::to_yaml;

use super::AppState;

/// `ETag: "<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn version_headers(version: u64, hash: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, etag(version));
    if let Ok(v) = HeaderValue::from_str(hash) {
        h.insert("x-switchyard-hash", v);
    }
    h
}

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    /// `json` (default) or `yaml`.
    pub format: Option<String>,
}

/// `GET /api/config`: the live config (the version is in the ETag).
pub async fn get_config(State(state): State<AppState>, Query(q): Query<FormatQuery>) -> Response {
    let snap = state.service.current();
    let headers = version_headers(snap.version, &snap.hash);
    match q.format.as_deref() {
        Some("yaml") => (
            headers,
            [(header::CONTENT_TYPE, "application/yaml")],
            to_yaml(&snap.config),
        )
            .into_response(),
        _ => (headers, Json(&*snap.config)).into_response(),
    }
}

#[derive(Debug, Serialize)]
pub struct RulesView<'a> {
    pub version: u64,
    pub rules: &'a [Rule],
}

/// `GET /api/rules`: the rules in order (first match wins).
pub async fn list_rules(State(state): State<AppState>) -> Response {
    let snap = state.service.current();
    let headers = version_headers(snap.version, &snap.hash);
    (
        headers,
        Json(RulesView {
            version: snap.version,
            rules: &snap.config.rules,
        }),
    )
        .into_response()
}
