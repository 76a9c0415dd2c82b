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
