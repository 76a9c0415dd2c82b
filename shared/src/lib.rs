//! Switchyard's pure logic, shared by the control plane and the data planes:
//! the config model ([`config`]), parsing and hashing ([`parse`]),
//! validation with every problem and its path ([`validate`]), the compiled
//! routing table ([`routing`]), the gRPC contract ([`proto`]) and the
//! conversions between the domain model and the wire ([`convert`]).
//! Nothing here does network or disk I/O.

pub mod config;
pub mod convert;
pub mod delta;
#[cfg(test)]
mod fixtures;
pub mod http1;
pub mod otlp;
pub mod parse;
pub mod reuse;
pub mod routing;
pub mod validate;
pub mod wire;

/// Generated from `proto/switchyard/v1/*.proto` (package `switchyard.v1`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("switchyard.v1");
    pub use crate::wire::Snapshot;
}

pub use config::Config;
pub use reuse::RuleReuse;
pub use validate::{validate, validate_reusing, Problem, ValidationErrors};
