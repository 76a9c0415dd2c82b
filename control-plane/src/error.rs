//! The one service-level error: a code mapped once to an HTTP status and a
//! `tonic::Code`, so REST and gRPC always agree.

use http::StatusCode;
use serde::Serialize;

/// One problem in a rejected configuration, with its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl From<switchyard_shared::validate::Problem> for Problem {
    fn from(p: switchyard_shared::validate::Problem) -> Self {
        Self {
            path: p.path,
            message: p.message,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// What went wrong, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is malformed (bad JSON/YAML, bad parameter).
    BadRequest,
    /// The configuration the change would produce is invalid.
    ValidationFailed,
    NotFound,
    AlreadyExists,
    /// `If-Match` / `if_version` named a version that is no longer current.
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unauthenticated,
    PermissionDenied,
    RateLimited,
    /// A dependency (nodes, storage) did not answer in time.
    Timeout,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::BadRequest | Self::ValidationFailed | Self::UnsupportedMediaType => {
                tonic::Code::InvalidArgument
            }
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::PreconditionFailed => tonic::Code::FailedPrecondition,
            Self::PayloadTooLarge | Self::RateLimited => tonic::Code::ResourceExhausted,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The stable machine-readable name (`validation_failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::ValidationFailed => "validation_failed",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// A failed service operation. `problems` is non-empty for
/// `ValidationFailed`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    pub problems: Vec<Problem>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn invalid(problems: Vec<Problem>) -> Self {
        let n = problems.len();
        Self {
            code: ErrorCode::ValidationFailed,
            message: format!(
                "the configuration is invalid ({n} problem{})",
                if n == 1 { "" } else { "s" }
            ),
            problems,
        }
    }

    pub fn stale(expected: u64, current: u64) -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            format!("version {expected} is not current (current is {current})"),
        )
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        let mut message = e.message;
        for p in &e.problems {
            message.push('\n');
            message.push_str(&p.to_string());
        }
        tonic::Status::new(e.code.grpc_code(), message)
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(ErrorCode::Unavailable, format!("storage error: {e}"))
    }
}
