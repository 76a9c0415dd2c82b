//! RFC 9457 problem documents: the service error rendered for HTTP, and a
//! middleware that gives framework-generated errors (405, 413, 415, bad
//! JSON) the same shape.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ErrorCode, Problem, ServiceError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The service error code (`validation_failed`, `not_found`, ...).
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// A service error on its way out as HTTP.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    problems: Vec<Problem>,
) -> Response {
    let doc = ProblemDocument {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        problems,
    };
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = e.code.http_status();
        if status.is_server_error() {
            tracing::error!(code = e.code.as_str(), error = %e.message, "request failed");
        }
        problem_response(status, e.code.as_str(), e.message, e.problems)
    }
}

/// Unknown routes.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError(ServiceError::not_found(format!(
        "no such resource: {}",
        uri.path()
    )))
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge.as_str(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType.as_str(),
        StatusCode::NOT_FOUND => ErrorCode::NotFound.as_str(),
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited.as_str(),
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::ValidationFailed.as_str(),
        s if s.is_server_error() => ErrorCode::Internal.as_str(),
        _ => ErrorCode::BadRequest.as_str(),
    }
}

/// Rewrites error answers that are not problem documents yet (axum's own
/// rejections are plain text) into problem documents, keeping their text as
/// the detail.
pub async fn problem_for_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // Problem documents and deliberate JSON answers (a 503 health report)
        // pass through; framework errors are plain text or empty.
        .is_some_and(|v| v.starts_with(PROBLEM_JSON) || v.starts_with("application/json"));
    if is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let detail = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut out = problem_response(status, code_for(status), detail, Vec::new());
    // Keep headers such as Allow and Retry-After.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
