//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the response types (utoipa), served at `/api/openapi.json`. The answers
//! the middleware can give on any route (401, 403, 429, 413, 415) are added
//! by one modifier that walks the paths, using the same rules the middleware
//! applies, so the document and the server cannot drift apart.

use std::sync::OnceLock;

use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use switchyard_shared::config::{Backend, Rule};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::auth::{is_public, is_read_only};
use super::problem::PROBLEM_JSON;
use super::{config, content, fleet, metrics, named};

/// Name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

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
    components(schemas(config::ConfigFormat, crate::api::problem::ProblemDocument)),
    modifiers(&MiddlewareAnswers),
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

/// Adds the bearer scheme, global security, and the answers the middleware
/// gives on every operation it guards.
struct MiddlewareAnswers;

fn problem(description: &str) -> utoipa::openapi::Response {
    let mut r = utoipa::openapi::Response::new(description);
    r.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name("ProblemDocument"))),
    );
    r
}

fn with_header(
    mut r: utoipa::openapi::Response,
    name: &str,
    header: Header,
) -> utoipa::openapi::Response {
    r.headers.insert(name.to_owned(), header);
    r
}

/// Adds `response` under `status` unless the handler documents it already.
fn answer(op: &mut Operation, status: &str, response: impl FnOnce() -> utoipa::openapi::Response) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(response()));
}

fn guard(path: &str, method: &Method, op: &mut Operation) {
    if is_public(path) {
        // Anyone may call it, token or not.
        op.security = Some(Vec::new());
    } else {
        answer(op, "401", || {
            let mut challenge = Header::default();
            challenge.description = Some("`Bearer`".to_owned());
            with_header(
                problem("A bearer token is required (API tokens are configured) and was missing or unknown"),
                "WWW-Authenticate",
                challenge,
            )
        });
        if !is_read_only(method, path) {
            answer(op, "403", || {
                problem("The token may only read; this operation needs an admin token")
            });
        }
    }
    answer(op, "429", || {
        let mut retry = Header::new(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        );
        retry.description =
            Some("Seconds until a request from this client is accepted again".to_owned());
        with_header(
            problem("Too many requests from this client IP (the rate limit is on)"),
            "Retry-After",
            retry,
        )
    });
    if op.request_body.is_some() {
        answer(op, "400", || {
            problem("Malformed request (the detail names line and column)")
        });
        answer(op, "413", || problem("Body over the size limit"));
        answer(op, "415", || problem("Unsupported Content-Type"));
    }
}

impl Modify for MiddlewareAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API token's secret. Required when the control plane is started with API tokens \
                 (`--api-token`, `SWITCHYARD_API_TOKENS`): `read` tokens may call reads and dry runs, \
                 writes need `admin`. Without tokens the API is open and listens on loopback only.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
        doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, item.get.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
                (Method::PATCH, item.patch.as_mut()),
                (Method::HEAD, item.head.as_mut()),
                (Method::OPTIONS, item.options.as_mut()),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    guard(path, &method, op);
                }
            }
        }
    }
}

/// The document, rendered once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

/// `GET /api/openapi.json`.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}
