//! The Switchyard control plane: owns the configuration, persists it
//! versioned in sled, validates every change, and distributes snapshots to
//! the data planes over gRPC.
//!
//! - [`options`]: flags; [`cli`]: the binary's edge (logging, signals, exit codes)
//! - [`server`]: `ControlPlane::validate`, `Validated::load` and `Prepared::serve`
//! - [`service`]: the one change path and the shared read model
//! - [`store`]: the `Store` trait and its sled implementation
//! - [`content`]: file sources inside the content root, blob index
//! - [`events`]: the numbered event stream; [`nodes`]: the fleet registry
//! - [`api`]: REST (axum) with auth, rate limit, CORS, problem documents,
//!   OpenAPI and the `/ws/events` WebSocket
//! - [`grpc`]: data-plane Sync and FetchBlob, the Admin service, health and
//!   reflection (tonic)
//! - [`error`]: the service error, mapped once to HTTP and gRPC
//! - [`metrics`]: fleet metrics from the nodes' reports; [`alerts`]:
//!   thresholds evaluated on every metrics tick

pub mod alerts;
pub mod api;
pub mod cli;
pub mod content;
pub mod error;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod nodes;
pub mod options;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time_util;
pub mod watcher;

#[cfg(test)]
mod test_support;

pub use cli::cli_main;
pub use error::{ErrorCode, Problem, ServiceError};
pub use options::{LogFormat, Options};
pub use server::{ControlPlane, Prepared, ServeError, StartError, Validated};
pub use service::{Service, SnapshotData};
