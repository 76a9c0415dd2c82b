//! The benchmark's upstream: one fast HTTP server answering fixed bodies, so
//! that every contestant (nginx, Switchyard, the backend hit directly) is
//! measured against the same bytes.

pub mod bodies;
pub mod server;

pub use bodies::Bodies;
pub use server::serve;
