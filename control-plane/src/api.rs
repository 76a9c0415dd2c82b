//! The REST API (axum): routes, shared state and the middleware that turns
//! every error into RFC 9457 `application/problem+json`. Handlers are thin:
//! they parse, call the service, and shape the answer.

mod config;
mod fleet;
pub mod problem;
#[cfg(test)]
mod tests;

use axum::routing::get;
use axum::Router;

use crate::service::Service;

pub use problem::ApiError;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
}

/// The whole REST router (without a socket, so tests can `oneshot` it).
pub fn router(service: Service) -> Router {
    let state = AppState { service };
    Router::new()
        .route("/api/health", get(fleet::health))
        .route("/api/nodes", get(fleet::nodes))
        .route("/api/config", get(config::get_config))
        .route("/api/rules", get(config::list_rules))
        .fallback(problem::not_found)
        .layer(axum::middleware::map_response(problem::problem_for_errors))
        .with_state(state)
}
