//! Request parsing shared by handlers: `If-Match`, config bodies in JSON or
//! YAML, and the shape of change answers.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use switchyard_shared::config::Config;
use switchyard_shared::parse::{parse_json, parse_yaml};

use super::config::etag;
use super::ApiError;
use crate::error::{ErrorCode, ServiceError};
use crate::service::ChangeOutcome;

/// `If-Match: "<version>"` (also `W/"<v>"` or a bare number); `*` or no
/// header means unconditional.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ServiceError::bad_request("If-Match is not valid text"))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| {
        ApiError(ServiceError::bad_request(format!(
            "If-Match must be a version in quotes, like \"3\" (got {text})"
        )))
    })
}

/// A config from a request body: JSON (default) or YAML by Content-Type.
pub fn config_body(headers: &HeaderMap, body: &[u8]) -> Result<Config, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let parsed = match essence.as_str() {
        "application/json" => parse_json(body),
        e if e.ends_with("+json") => parse_json(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ServiceError::bad_request("the YAML body is not UTF-8"))?;
            parse_yaml(text)
        }
        other => {
            return Err(ApiError(ServiceError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "unsupported Content-Type `{other}`; use application/json or application/yaml"
                ),
            )))
        }
    };
    parsed.map_err(|e| ApiError(ServiceError::bad_request(format!("malformed body: {e}"))))
}

/// The answer to a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    pub version: u64,
    pub hash: String,
    /// False when the change was identical to the current config.
    pub changed: bool,
    pub summary: String,
}

pub fn change_response(status: StatusCode, outcome: ChangeOutcome) -> Response {
    let tag = etag(outcome.version);
    let status = if outcome.changed {
        status
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::ETAG, tag)],
        Json(ChangeView {
            version: outcome.version,
            hash: outcome.hash,
            changed: outcome.changed,
            summary: outcome.summary,
        }),
    )
        .into_response()
}
