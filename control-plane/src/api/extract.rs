//! Request parsing shared by handlers: `If-Match`, JSON bodies (400 with
//! line and column when malformed, 422 with `{path, message}` when
//! well-formed but of the wrong shape), config bodies in JSON or YAML, and
//! the shape of change answers.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchyard_shared::config::Config;
use switchyard_shared::parse::{parse_json, parse_yaml, JsonError};

use super::config::etag;
use super::ApiError;
use crate::error::{ErrorCode, Problem, ServiceError};
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

/// The media type of the body without parameters, lowercased; `None`
/// without a (textual) Content-Type.
fn essence(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

/// Parses a JSON body. Malformed JSON is a 400 whose detail names line and
/// column; well-formed JSON of the wrong shape (a missing field, a wrong
/// type) is a 422 whose `problems` say where.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    parse_json(body).map_err(|e| match e {
        JsonError::Syntax {
            message,
            line,
            column,
        } => ServiceError::bad_request(format!(
            "malformed JSON body: {message} (line {line}, column {column})"
        )),
        JsonError::Shape {
            path,
            message,
            line,
            column,
        } => {
            let problem = Problem { path, message };
            ServiceError {
                code: ErrorCode::ValidationFailed,
                message: format!(
                    "the JSON body does not have the expected shape: {problem} (line {line}, column {column})"
                ),
                problems: vec![problem],
            }
        }
    })
}

/// A JSON request body, parsed by [`json_body`]: like `axum::Json`, but its
/// rejections are problem documents that say where the body is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !essence(req.headers()).is_some_and(|e| is_json(&e)) {
            return Err(ApiError(ServiceError::new(
                ErrorCode::UnsupportedMediaType,
                "expected a body with Content-Type: application/json",
            ))
            .into_response());
        }
        // Body-limit and read failures become problem documents in
        // `problem_for_errors`.
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        json_body(&body)
            .map(Self)
            .map_err(|e| ApiError(e).into_response())
    }
}

/// A config from a request body: JSON (default) or YAML by Content-Type.
pub fn config_body(headers: &HeaderMap, body: &[u8]) -> Result<Config, ApiError> {
    let essence = essence(headers).unwrap_or_else(|| "application/json".to_owned());
    match essence.as_str() {
        e if is_json(e) => Ok(json_body(body)?),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ServiceError::bad_request("the YAML body is not UTF-8"))?;
            parse_yaml(text)
                .map_err(|e| ApiError(ServiceError::bad_request(format!("malformed body: {e}"))))
        }
        other => Err(ApiError(ServiceError::new(
            ErrorCode::UnsupportedMediaType,
            format!("unsupported Content-Type `{other}`; use application/json or application/yaml"),
        ))),
    }
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
