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
}

/// A request the proxy could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no configuration has been applied yet")]
    NoSnapshot,
    #[error("backend `{backend}` has no server to send to")]
    NoServer { backend: String },
    #[error("cannot connect to {server} of backend `{backend}`: {source}")]
    Connect {
        backend: String,
        server: String,
        #[source]
        source: hyper_util::client::legacy::Error,
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
        source: hyper_util::client::legacy::Error,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoSnapshot | ProxyError::NoServer { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The value of [`ERROR_HEADER`].
    pub fn cause(&self) -> &'static str {
        match self {
            ProxyError::NoSnapshot => "no-snapshot",
            ProxyError::NoServer { .. } => "no-server",
            ProxyError::Connect { .. } => "upstream-connect",
            ProxyError::Timeout { .. } => "upstream-timeout",
            ProxyError::Upstream { .. } => "upstream-failed",
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::NoSnapshot | ProxyError::NoServer { .. } => Fault::Internal,
            _ => Fault::Upstream,
        }
    }

    /// Whether another attempt cannot duplicate side effects: only when
    /// the request never reached a server.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect { .. })
    }

    /// The short text answer sent to the client (details go to the log).
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = match &self {
            ProxyError::NoSnapshot => {
                "service unavailable: no configuration applied yet\n".to_owned()
            }
            ProxyError::NoServer { backend } => {
                format!("service unavailable: backend `{backend}` has no server\n")
            }
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
        text_response(self.status(), self.cause(), body)
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
