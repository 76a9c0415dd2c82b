//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the response types (utoipa), served at `/api/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use switchyard_shared::config::{Backend, Rule};
use utoipa::OpenApi;

use super::{config, content, fleet, metrics, named};

/// `GET /api/rules`.
#[derive(Debug, utoipa::ToSchema)]
pub struct RulesList {
    pub version: u64,
    /// Rules in order (first match wins).
    pub rules: Vec<Rule>,
}

/// `GET /api/backends`.
#[derive(Debug, utoipa::ToSchema)]
pub struct BackendsList {
    pub version: u64,
    pub backends: Vec<Backend>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard control plane",
        description = "Configuration, fleet and content management. Errors are RFC 9457 problem documents."
    ),
    paths(
        fleet::health,
        fleet::status,
        fleet::nodes,
        metrics::metrics,
        metrics::history,
        metrics::prometheus,
        config::get_config,
        config::put_config,
        config::validate_config,
        config::reload_config,
        config::history,
        config::history_entry,
        config::rollback,
        config::audit,
        config::list_rules,
        named::create_rule,
        named::get_rule,
        named::update_rule,
        named::delete_rule,
        named::test_rule,
        named::list_backends,
        named::create_backend,
        named::get_backend,
        named::update_backend,
        named::delete_backend,
        content::sources,
        named::create_source,
        named::get_source,
        named::update_source,
        named::delete_source,
        content::clear_all,
        content::clear_source,
        content::cache_stats,
    ),
    components(schemas(config::ConfigFormat)),
    tags(
        (name = "status", description = "Health, status and the fleet"),
        (name = "config", description = "The whole config"),
        (name = "rules", description = "Routing rules (ordered; first match wins)"),
        (name = "backends", description = "Upstream server groups"),
        (name = "content", description = "Content sources and data-plane caches"),
        (name = "history", description = "Versions, rollback and the audit log"),
        (name = "metrics", description = "Fleet metrics, their history and Prometheus text"),
    )
)]
pub struct ApiDoc;

/// The document, rendered once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

/// `GET /api/openapi.json`.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}
