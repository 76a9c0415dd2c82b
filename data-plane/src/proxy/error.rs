//! Errors the proxy answers itself, with the two facts a proxy acts on:
//! whose fault it was and whether another attempt is safe.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};

use super::body::ProxyBody;

/// The header naming the cause of a proxy-generated error.
pub const ERROR_HEADER: &str = "x-switchyard-error";

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The upstream server (down, slow, broken).
    Upstream,
    /// The proxy's own state (no config, no server to pick).
    Internal,
    /// The client (body too large or broken).
    Downstream,
}

/// A request the proxy could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no configuration has been applied yet")]
    NoSnapshot,
    #[error("backend `{backend}` has no healthy server to send to")]
    NoServer { backend: String },
    #[error("every healthy server of backend `{backend}` has an open circuit breaker")]
    CircuitOpen { backend: String },
    #[error("the request was not answered within {timeout:?}")]
    RequestTimeout { timeout: Duration },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request head is larger than {limit} bytes")]
    HeaderTooLarge { limit: u64 },
    #[error("reading the request body failed: {source}")]
    ClientBody {
        #[source]
        source: super::upstream_body::BoxError,
    },
    #[error("cannot connect to {server} of backend `{backend}`: {source}")]
    Connect {
        backend: String,
        server: String,
        #[source]
        source: crate::backend::pool::UpstreamError,
    },
    #[error("{server} of backend `{backend}` sent no response head within {timeout:?}")]
    Timeout {
        backend: String,
        server: String,
        timeout: Duration,
    },
    #[error("request to {server} of backend `{backend}` failed: {source}")]
    Upstream {
        backend: String,
        server: String,
        #[source]
        source: crate::backend::pool::UpstreamError,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoSnapshot
            | ProxyError::NoServer { .. }
            | ProxyError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } | ProxyError::RequestTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::HeaderTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The value of [`ERROR_HEADER`].
    pub fn cause(&self) -> &'static str {
        match self {
            ProxyError::NoSnapshot => "no-snapshot",
            ProxyError::NoServer { .. } => "no-server",
            ProxyError::CircuitOpen { .. } => "circuit-open",
            ProxyError::RequestTimeout { .. } => "request-timeout",
            ProxyError::BodyTooLarge { .. } => "body-too-large",
            ProxyError::HeaderTooLarge { .. } => "header-too-large",
            ProxyError::ClientBody { .. } => "client-body",
            ProxyError::Connect { .. } => "upstream-connect",
            ProxyError::Timeout { .. } => "upstream-timeout",
            ProxyError::Upstream { .. } => "upstream-failed",
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::NoSnapshot
            | ProxyError::NoServer { .. }
            | ProxyError::CircuitOpen { .. } => Fault::Internal,
            ProxyError::BodyTooLarge { .. }
            | ProxyError::HeaderTooLarge { .. }
            | ProxyError::ClientBody { .. } => Fault::Downstream,
            _ => Fault::Upstream,
        }
    }

    /// Whether another attempt cannot duplicate side effects: only when
    /// the request never reached a server.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect { .. })
    }

    /// The `retry_on` class of an upstream failure.
    pub fn retry_on(&self) -> Option<switchyard_shared::config::RetryOn> {
        use switchyard_shared::config::RetryOn;
        match self {
            ProxyError::Connect { .. } => Some(RetryOn::ConnectError),
            ProxyError::Timeout { .. } => Some(RetryOn::Timeout),
            ProxyError::Upstream { .. } => Some(RetryOn::Reset),
            _ => None,
        }
    }

    /// Whether a rule's fallback may answer instead: upstream failures and
    /// no server to send to, not client mistakes.
    pub fn wants_fallback(&self) -> bool {
        !matches!(
            self,
            ProxyError::NoSnapshot
                | ProxyError::BodyTooLarge { .. }
                | ProxyError::HeaderTooLarge { .. }
                | ProxyError::ClientBody { .. }
        )
    }

    /// The short text answer sent to the client (details go to the log).
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = match &self {
            ProxyError::NoSnapshot => {
                "service unavailable: no configuration applied yet\n".to_owned()
            }
            ProxyError::NoServer { backend } => {
                format!("service unavailable: backend `{backend}` has no healthy server\n")
            }
            ProxyError::CircuitOpen { backend } => {
                format!("service unavailable: backend `{backend}` circuit breaker open\n")
            }
            ProxyError::RequestTimeout { .. } => {
                "gateway timeout: the request was not answered in time\n".to_owned()
            }
            ProxyError::BodyTooLarge { limit } => {
                format!("payload too large: request bodies are limited to {limit} bytes\n")
            }
            ProxyError::HeaderTooLarge { limit } => format!(
                "request header fields too large: request heads are limited to {limit} bytes\n"
            ),
            ProxyError::ClientBody { .. } => "bad request: the request body broke off\n".to_owned(),
            ProxyError::Connect { backend, .. } => {
                format!("bad gateway: backend `{backend}` is unreachable\n")
            }
            ProxyError::Timeout { backend, .. } => {
                format!("gateway timeout: backend `{backend}` did not answer in time\n")
            }
            ProxyError::Upstream { backend, .. } => {
                format!("bad gateway: backend `{backend}` failed to answer\n")
            }
        };
        let mut response = text_response(self.status(), self.cause(), body);
        if matches!(self, ProxyError::BodyTooLarge { .. }) {
            // The rest of the body may still be on its way: the connection
            // closes after this answer, and the client is told so rather
            // than finding out on its next request.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A proxy-generated plain-text answer marked with [`ERROR_HEADER`].
pub fn text_response(status: StatusCode, cause: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(ERROR_HEADER, HeaderValue::from_static(cause));
    response
}
