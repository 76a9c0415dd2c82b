//! Generic CRUD handlers for named items (rules, backends, content
//! sources), plus the rule "explain match" endpoint.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::Actor;
use super::config::etag;
use super::extract::{change_response, if_match, ApiJson};
use super::{ApiError, AppState};
use crate::service::{audit_action, ChangeMeta, Explanation, Named, NamedOp, SampleRequest};
use switchyard_shared::config::{Backend, ContentSource, Rule};

#[derive(Debug, Deserialize)]
pub struct PositionQuery {
    /// 0-based index the item ends up at (rule order decides which wins);
    /// absent: append (create) or keep the place (update). The service
    /// rejects values above [`crate::service::MAX_POSITION`].
    pub position: Option<usize>,
}

/// `GET /api/<items>`: `{ "version": N, "<items>": [...] }`.
pub async fn list<T: Named + Serialize>(State(state): State<AppState>) -> Response {
    let snap = state.service.current();
    let mut body = serde_json::Map::new();
    body.insert("version".into(), snap.version.into());
    body.insert(
        T::PLURAL.into(),
        serde_json::to_value(T::items(&snap.config)).unwrap_or_default(),
    );
    ([(axum::http::header::ETAG, etag(snap.version))], Json(body)).into_response()
}

/// `GET /api/<items>/{name}`.
pub async fn get_one<T: Named + Serialize>(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (version, item) = state.service.named_item::<T>(&name)?;
    Ok(([(axum::http::header::ETAG, etag(version))], Json(item)).into_response())
}

/// `POST /api/<items>`: 201, or 409 when the name exists.
pub async fn create<T: Named + DeserializeOwned>(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Query(q): Query<PositionQuery>,
    ApiJson(item): ApiJson<T>,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor.0.clone(), audit_action::<T>("create"))
        .if_version(if_match(&headers)?);
    let outcome = state
        .service
        .edit(
            meta,
            NamedOp::Create {
                item,
                position: q.position,
            },
        )
        .await?;
    Ok(change_response(StatusCode::CREATED, outcome))
}

/// `PUT /api/<items>/{name}`: replace (and possibly rename or move) one item.
pub async fn update<T: Named + DeserializeOwned>(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PositionQuery>,
    ApiJson(item): ApiJson<T>,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor.0.clone(), audit_action::<T>("update"))
        .if_version(if_match(&headers)?);
    let outcome = state
        .service
        .edit(
            meta,
            NamedOp::Update {
                name,
                item,
                position: q.position,
            },
        )
        .await?;
    Ok(change_response(StatusCode::OK, outcome))
}

/// `DELETE /api/<items>/{name}`: 404 when unknown.
pub async fn delete<T: Named>(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor.0.clone(), audit_action::<T>("delete"))
        .if_version(if_match(&headers)?);
    let outcome = state
        .service
        .edit::<T>(meta, NamedOp::Delete { name })
        .await?;
    Ok(change_response(StatusCode::OK, outcome))
}

/// `POST /api/rules/{name}/test`: explain a sample request against a rule.
#[utoipa::path(post, path = "/api/rules/{name}/test", tag = "rules",
    params(("name" = String, Path, description = "The rule to explain")),
    request_body(content = crate::service::SampleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Whether the rule matches, why not, and which rule wins", body = Explanation),
        (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Type", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn test_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(sample): ApiJson<SampleRequest>,
) -> Result<Json<Explanation>, ApiError> {
    Ok(Json(state.service.explain_rule(&name, &sample)?))
}

/// Concrete, documented handlers for one kind of named item: the generic
/// handlers above, instantiated so each route has its own OpenAPI entry.
macro_rules! named_handlers {
    ($ty:ty, $tag:literal, $list_path:literal, $item_path:literal,
     create: $create:ident, get: $get:ident, update: $update:ident, delete: $delete:ident) => {
        #[utoipa::path(post, path = $list_path, tag = $tag,
            params(("position" = Option<u32>, Query, nullable = false, maximum = 1000000, description = "0-based index to insert at; past the end appends (default: append)"), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#, description = "Expected current version, e.g. \"3\"; stale -> 412")),
            request_body(content = $ty, content_type = "application/json"),
            responses(
                (status = 201, description = "Created", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
                (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 409, description = "An item with this name exists", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 412, description = "If-Match names a version that is no longer current", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Type", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
            ))]
        pub async fn $create(
            state: State<AppState>,
            actor: Actor,
            headers: HeaderMap,
            q: Query<PositionQuery>,
            item: ApiJson<$ty>,
        ) -> Result<Response, ApiError> {
            create::<$ty>(state, actor, headers, q, item).await
        }

        #[utoipa::path(get, path = $item_path, tag = $tag,
            params(("name" = String, Path, description = "The item's name")),
            responses((status = 200, description = "The item", headers(("ETag" = String, description = "The version, quoted")), body = $ty), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json")))]
        pub async fn $get(state: State<AppState>, name: Path<String>) -> Result<Response, ApiError> {
            get_one::<$ty>(state, name).await
        }

        #[utoipa::path(put, path = $item_path, tag = $tag,
            params(
                ("name" = String, Path, description = "The item's current name"),
                ("position" = Option<u32>, Query, nullable = false, maximum = 1000000, description = "0-based index to move it to; past the end moves it last (default: keep)"),
                ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#, description = "Expected current version, e.g. \"3\"; stale -> 412"),
            ),
            request_body(content = $ty, content_type = "application/json"),
            responses(
                (status = 200, description = "Replaced", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
                (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 409, description = "An item with this name exists", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 412, description = "If-Match names a version that is no longer current", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Type", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
            ))]
        pub async fn $update(
            state: State<AppState>,
            actor: Actor,
            name: Path<String>,
            headers: HeaderMap,
            q: Query<PositionQuery>,
            item: ApiJson<$ty>,
        ) -> Result<Response, ApiError> {
            update::<$ty>(state, actor, name, headers, q, item).await
        }

        #[utoipa::path(delete, path = $item_path, tag = $tag,
            params(("name" = String, Path, description = "The item's name"), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#, description = "Expected current version, e.g. \"3\"; stale -> 412")),
            responses(
                (status = 200, description = "Deleted", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::extract::ChangeView),
                (status = 400, description = "Malformed request (the detail names line and column)", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
                (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 412, description = "If-Match names a version that is no longer current", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 422, description = "Invalid result; `problems` lists every problem with its path", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"), (status = 503, description = "Storage unavailable", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
            ))]
        pub async fn $delete(
            state: State<AppState>,
            actor: Actor,
            name: Path<String>,
            headers: HeaderMap,
        ) -> Result<Response, ApiError> {
            delete::<$ty>(state, actor, name, headers).await
        }
    };
}

named_handlers!(Rule, "rules", "/api/rules", "/api/rules/{name}",
    create: create_rule, get: get_rule, update: update_rule, delete: delete_rule);
named_handlers!(Backend, "backends", "/api/backends", "/api/backends/{name}",
    create: create_backend, get: get_backend, update: update_backend, delete: delete_backend);
named_handlers!(ContentSource, "content", "/api/content/sources", "/api/content/sources/{name}",
    create: create_source, get: get_source, update: update_source, delete: delete_source);

#[utoipa::path(get, path = "/api/backends", tag = "backends",
    responses((status = 200, description = "The backends", headers(("ETag" = String, description = "The version, quoted")), body = crate::api::openapi::BackendsList)))]
pub async fn list_backends(state: State<AppState>) -> Response {
    list::<Backend>(state).await
}
