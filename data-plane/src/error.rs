//! The data plane's process-level errors (start-up, binding, serving).

use std::net::SocketAddr;

/// Why the data plane could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot bind {role} listener {addr}: {source}")]
    Bind {
        role: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the cache folder: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("invalid control plane URL `{url}`: {reason}")]
    ControlPlaneUrl { url: String, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{role} listener failed: {source}")]
    Serve {
        role: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its sources, `: `-separated (tonic's transport error alone
/// says only "transport error").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
