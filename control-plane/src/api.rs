//! The REST API (axum): routes, shared state and the middleware that turns
//! every error into RFC 9457 `application/problem+json`. Handlers are thin:
//! they parse, call the service, and shape the answer.

pub mod auth;
mod config;
mod content;
mod events_ws;
mod extract;
mod fleet;
pub mod limits;
mod metrics;
mod named;
pub mod openapi;
pub mod problem;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_changes;
#[cfg(test)]
mod tests_middleware;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::service::Service;

pub use problem::ApiError;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
}

/// Middleware settings of the REST API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer tokens; empty: no authentication (loopback only).
    pub tokens: Vec<auth::Token>,
    /// Per-client-IP limit; `None`: off.
    pub rate_limit: Option<limits::RateLimit>,
    /// Origins allowed by CORS; empty: CORS off.
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            rate_limit: None,
            cors_origins: Vec::new(),
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// The whole REST router with default middleware settings (no auth, no
/// rate limit), for tests that `oneshot` it without a socket.
pub fn router(service: Service) -> Router {
    router_with(service, &ApiConfig::default())
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    if origins.is_empty() {
        return None;
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
            ])
            .expose_headers([header::ETAG]),
    )
}

/// The whole REST router.
pub fn router_with(service: Service, config: &ApiConfig) -> Router {
    let state = AppState { service };
    let auth = std::sync::Arc::new(auth::Auth::new(config.tokens.clone()));
    let limiter = config
        .rate_limit
        .map(|l| std::sync::Arc::new(limits::RateLimiter::new(l)));
    let router = routes()
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(auth, auth::require));
    let router = match limiter {
        Some(l) => router.layer(axum::middleware::from_fn_with_state(l, limits::rate_limit)),
        None => router,
    };
    let router = router
        .layer(axum::middleware::map_response(problem::problem_for_errors))
        .layer(axum::middleware::from_fn(limits::log_requests));
    let router = match cors(&config.cors_origins) {
        Some(c) => router.layer(c),
        None => router,
    };
    router.with_state(state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws/events", get(events_ws::events))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/health", get(fleet::health))
        .route("/api/status", get(fleet::status))
        .route("/api/metrics", get(metrics::metrics))
        .route("/api/metrics/history", get(metrics::history))
        .route("/metrics", get(metrics::prometheus))
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
            get(config::list_rules).post(named::create_rule),
        )
        .route(
            "/api/rules/{name}",
            get(named::get_rule)
                .put(named::update_rule)
                .delete(named::delete_rule),
        )
        .route("/api/rules/{name}/test", post(named::test_rule))
        .route(
            "/api/backends",
            get(named::list_backends).post(named::create_backend),
        )
        .route(
            "/api/backends/{name}",
            get(named::get_backend)
                .put(named::update_backend)
                .delete(named::delete_backend),
        )
        .route(
            "/api/content/sources",
            get(content::sources).post(named::create_source),
        )
        .route(
            "/api/content/sources/{name}",
            get(named::get_source)
                .put(named::update_source)
                .delete(named::delete_source),
        )
        .route("/api/content/cache/clear", post(content::clear_all))
        .route("/api/content/cache/{source}", delete(content::clear_source))
        .route("/api/content/cache/stats", get(content::cache_stats))
        .fallback(problem::not_found)
}
