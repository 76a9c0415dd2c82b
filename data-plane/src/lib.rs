//! The Switchyard data plane: a reverse proxy that follows the control
//! plane over gRPC.
//!
//! - [`options`]: command-line options ([`Options`]), reusable by the
//!   standalone binary.
//! - [`node`]: [`DataPlane`], which serves on pre-bound listeners until a
//!   shutdown future resolves; [`cli_main`] wraps it for the binary.
//! - `sync`: the `Sync` stream client (backoff, Hello, snapshots with
//!   Ack/Nack, blob fetching, metrics reports) and the cached snapshot.
//! - [`snapshot`]: the immutable, atomically swapped [`Snapshot`].
//! - `proxy`, `listener`: request handling (route, forward, replace) and
//!   the HTTP/1.1 + h2c accept loop.
//! - `admin`: `/healthz`, `/readyz`, `/metrics`.
//! - `content`: content sources served by `replace` rules and fallbacks
//!   (remote fetch and cache, ETag/Range/compression, body rewriting).
//! - [`cache`]: the cache folder (last good snapshot, content-addressed
//!   blobs), [`metrics`]: counters and Prometheus rendering.

mod admin;
mod backend;
pub mod cache;
mod cli;
mod content;
mod deadline;
pub mod error;
mod events;
mod lazy;
mod listener;
pub mod metrics;
pub mod node;
pub mod options;
mod proxy;
pub mod shutdown;
pub mod snapshot;
mod state;
mod sync;
pub mod telemetry;

pub use cli::{cli_main, init_tracing, shutdown_signal};
pub use error::DataPlaneError;
pub use node::{announce, DataPlane};
pub use options::{LogFormat, Options};
pub use proxy::error::ERROR_HEADER;
pub use snapshot::{Snapshot, SnapshotSource};
