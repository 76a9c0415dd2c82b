//! The REST API (axum): routes, shared state and the middleware that turns
//! every error into RFC 9457 `application/problem+json`. Handlers are thin:
//! they parse, call the service, and shape the answer.

mod config;
mod content;
mod extract;
mod fleet;
mod named;
pub mod problem;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_changes;

use axum::routing::{delete, get, post};
use axum::Router;
use switchyard_shared::config::{Backend, ContentSource, Rule};

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
        .route("/api/status", get(fleet::status))
        .route("/api/metrics", get(fleet::metrics))
        .route("/api/nodes", get(fleet::nodes))
        .route(
            "/api/config",
            get(config::get_config).put(config::put_config),
        )
        .route("/api/config/validate", post(config::validate_config))
        .route("/api/config/reload", post(config::reload_config))
        .route("/api/config/history", get(config::history))
        .route("/api/config/history/{version}", get(config::history_entry))
        .route("/api/config/rollback/{version}", post(config::rollback))
        .route("/api/audit", get(config::audit))
        .route(
            "/api/rules",
            get(config::list_rules).post(named::create::<Rule>),
        )
        .route(
            "/api/rules/{name}",
            get(named::get_one::<Rule>)
                .put(named::update::<Rule>)
                .delete(named::delete::<Rule>),
        )
        .route("/api/rules/{name}/test", post(named::test_rule))
        .route(
            "/api/backends",
            get(named::list::<Backend>).post(named::create::<Backend>),
        )
        .route(
            "/api/backends/{name}",
            get(named::get_one::<Backend>)
                .put(named::update::<Backend>)
                .delete(named::delete::<Backend>),
        )
        .route(
            "/api/content/sources",
            get(content::sources).post(named::create::<ContentSource>),
        )
        .route(
            "/api/content/sources/{name}",
            get(named::get_one::<ContentSource>)
                .put(named::update::<ContentSource>)
                .delete(named::delete::<ContentSource>),
        )
        .route("/api/content/cache/clear", post(content::clear_all))
        .route("/api/content/cache/{source}", delete(content::clear_source))
        .route("/api/content/cache/stats", get(content::cache_stats))
        .fallback(problem::not_found)
        .layer(axum::middleware::map_response(problem::problem_for_errors))
        .with_state(state)
}
