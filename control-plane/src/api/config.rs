//! Handlers for the config as a whole and its rules.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_shared::config::{Config, Rule};
use switchyard_shared::parse::to_yaml;

use super::auth::Actor;
use super::extract::{change_response, config_body, if_match};
use super::{ApiError, AppState};
use crate::error::{ErrorCode, Problem};
use crate::service::{ChangeMeta, Diff};
use crate::store::HistoryEntry;
use crate::time_util::rfc3339_from_unix_ms;

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

/// How `GET /api/config` renders the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    Json,
    Yaml,
}

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    /// `json` (default) or `yaml`.
    pub format: Option<ConfigFormat>,
}

/// `GET /api/config`: the live config (the version is in the ETag).
#[utoipa::path(get, path = "/api/config", tag = "config",
    params(("format" = Option<ConfigFormat>, Query, nullable = false, description = "`json` (default) or `yaml`")),
    responses(
        (status = 200, description = "The live config", headers(("ETag" = String, description = "The version, quoted")),
            content((Config = "application/json"), (Config = "application/yaml"))),
        (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn get_config(
    State(state): State<AppState>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let snap = state.service.current();
    let headers = version_headers(snap.version, &snap.hash);
    Ok(match q.format.unwrap_or(ConfigFormat::Json) {
        ConfigFormat::Yaml => (
            headers,
            [(header::CONTENT_TYPE, "application/yaml")],
            to_yaml(&snap.config),
        )
            .into_response(),
        ConfigFormat::Json => (headers, Json(&*snap.config)).into_response(),
    })
}

#[derive(Debug, Serialize)]
pub struct RulesView<'a> {
    pub version: u64,
    pub rules: &'a [Rule],
}

/// `GET /api/rules`: the rules in order (first match wins).
#[utoipa::path(get, path = "/api/rules", tag = "rules",
    responses((status = 200, description = "The rules in order (first match wins)", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::openapi::RulesList)))]
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

/// `PUT /api/config`: replace the whole config (JSON or YAML body).
#[utoipa::path(put, path = "/api/config", tag = "config",
    params(("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#, description = "Expected current version, e.g. \"3\"; stale -> 412")),
    request_body(description = "The whole config", content((Config = "application/json"), (Config = "application/yaml"))),
    responses(
        (status = 200, description = "Applied (or identical: `changed` is false)", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
        (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 412, description = "If-Match names a version that is no longer current", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Type", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn put_config(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let config = config_body(&headers, &body)?;
    let outcome = state
        .service
        .apply(
            ChangeMeta::new(actor.0.clone(), "put_config").if_version(expected),
            move |_| Ok(config),
        )
        .await?;
    Ok(change_response(StatusCode::OK, outcome))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValidationView {
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// What applying it would change (when valid).
    pub diff: Option<Diff>,
    pub summary: Option<String>,
    /// The version the diff is against.
    pub current_version: u64,
}

/// `POST /api/config/validate`: check a config without applying it.
#[utoipa::path(post, path = "/api/config/validate", tag = "config",
    request_body(description = "A config to check", content((Config = "application/json"), (Config = "application/yaml"))),
    responses(
        (status = 200, description = "The problems, or OK with the diff it would apply", body = ValidationView),
        (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Type", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn validate_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ValidationView>, ApiError> {
    let current = state.service.current();
    let config = match config_body(&headers, &body) {
        Ok(c) => c,
        // A body of the wrong shape is one more problem to report here.
        Err(ApiError(e)) if e.code == ErrorCode::ValidationFailed => {
            return Ok(Json(ValidationView {
                valid: false,
                problems: e.problems,
                diff: None,
                summary: None,
                current_version: current.version,
            }))
        }
        Err(e) => return Err(e),
    };
    let view = match state.service.check(config).await {
        Ok(checked) => {
            let diff = Diff::between(&current.config, &checked.config);
            ValidationView {
                valid: true,
                problems: Vec::new(),
                summary: Some(diff.summary()),
                diff: Some(diff),
                current_version: current.version,
            }
        }
        Err(e) if e.code == ErrorCode::ValidationFailed => ValidationView {
            valid: false,
            problems: e.problems,
            diff: None,
            summary: None,
            current_version: current.version,
        },
        Err(e) => return Err(e.into()),
    };
    Ok(Json(view))
}

/// `POST /api/config/reload`: force the config file in.
#[utoipa::path(post, path = "/api/config/reload", tag = "config",
    responses(
        (status = 200, description = "The file was applied (or identical)", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
        (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn reload_config(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Response, ApiError> {
    let outcome = state.service.reload_file(&actor.0).await?;
    Ok(change_response(StatusCode::OK, outcome))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryItem {
    pub version: u64,
    pub hash: String,
    /// RFC 3339.
    pub timestamp: String,
    pub actor: String,
    pub summary: String,
}

impl From<&HistoryEntry> for HistoryItem {
    fn from(h: &HistoryEntry) -> Self {
        Self {
            version: h.version,
            hash: h.hash.clone(),
            timestamp: rfc3339_from_unix_ms(h.timestamp_unix_ms),
            actor: h.actor.clone(),
            summary: h.summary.clone(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryList {
    pub current_version: u64,
    pub entries: Vec<HistoryItem>,
}

/// `GET /api/config/history`: retained versions, newest first.
#[utoipa::path(get, path = "/api/config/history", tag = "history",
    responses((status = 200, description = "Retained versions, newest first", body = HistoryList), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json")))]
pub async fn history(State(state): State<AppState>) -> Result<Json<HistoryList>, ApiError> {
    let entries = state.service.history().await?;
    Ok(Json(HistoryList {
        current_version: state.service.current().version,
        entries: entries.iter().map(HistoryItem::from).collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryDetail {
    #[serde(flatten)]
    pub item: HistoryItem,
    pub config: Config,
}

/// `GET /api/config/history/{version}`.
#[utoipa::path(get, path = "/api/config/history/{version}", tag = "history",
    params(("version" = u64, Path, maximum = 9223372036854775807_u64, description = "A retained version")),
    responses((status = 200, description = "That version and its config", body = HistoryDetail), (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json")))]
pub async fn history_entry(
    State(state): State<AppState>,
    Path(version): Path<u64>,
) -> Result<Json<HistoryDetail>, ApiError> {
    let entry = state.service.history_entry(version).await?;
    Ok(Json(HistoryDetail {
        item: HistoryItem::from(&entry),
        config: entry.config,
    }))
}

/// `POST /api/config/rollback/{version}`: a new version equal to an old one.
#[utoipa::path(post, path = "/api/config/rollback/{version}", tag = "history",
    params(("version" = u64, Path, maximum = 9223372036854775807_u64, description = "The version to return to"), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#, description = "Expected current version, e.g. \"3\"; stale -> 412")),
    responses(
        (status = 200, description = "A new version equal to the old one", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
        (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 412, description = "If-Match names a version that is no longer current", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    actor: Actor,
    Path(version): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor.0.clone(), "rollback").if_version(if_match(&headers)?);
    let outcome = state.service.rollback(version, meta).await?;
    Ok(change_response(StatusCode::OK, outcome))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Only entries with an id below this (paging backwards).
    pub before: Option<u64>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditItem {
    pub id: u64,
    pub timestamp: String,
    pub actor: String,
    pub action: String,
    pub from_version: u64,
    pub to_version: u64,
    pub summary: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditItem>,
}

/// `GET /api/audit`: newest first.
#[utoipa::path(get, path = "/api/audit", tag = "history",
    params(
        ("before" = Option<u64>, Query, nullable = false, maximum = 9223372036854775807_u64, description = "Only entries with a smaller id"),
        ("limit" = Option<u32>, Query, nullable = false, minimum = 1, maximum = 1000, description = "At most this many (default 100)"),
    ),
    responses((status = 200, description = "Audit entries, newest first", body = AuditList), (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json")))]
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let entries = state.service.audit_page(q.before, q.limit).await?;
    Ok(Json(AuditList {
        entries: entries
            .into_iter()
            .map(|a| AuditItem {
                id: a.id,
                timestamp: rfc3339_from_unix_ms(a.timestamp_unix_ms),
                actor: a.actor,
                action: a.action,
                from_version: a.from_version,
                to_version: a.to_version,
                summary: a.summary,
            })
            .collect(),
    }))
}
