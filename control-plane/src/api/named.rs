//! Generic CRUD handlers for named items (rules, backends, content
//! sources), plus the rule "explain match" endpoint.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::{actor, etag};
use super::extract::{change_response, if_match};
use super::{ApiError, AppState};
use crate::error::ServiceError;
use crate::service::{ChangeMeta, Explanation, Named, NamedOp, SampleRequest};

#[derive(Debug, Deserialize)]
pub struct PositionQuery {
    /// 0-based index the item ends up at (rule order decides which wins);
    /// absent: append (create) or keep the place (update).
    pub position: Option<usize>,
}

fn action_name<T: Named>(verb: &str) -> &'static str {
    match (verb, T::PLURAL) {
        ("create", "rules") => "create_rule",
        ("update", "rules") => "update_rule",
        ("delete", "rules") => "delete_rule",
        ("create", "backends") => "create_backend",
        ("update", "backends") => "update_backend",
        ("delete", "backends") => "delete_backend",
        ("create", _) => "create_content_source",
        ("update", _) => "update_content_source",
        _ => "delete_content_source",
    }
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
    let snap = state.service.current();
    let item = T::items(&snap.config)
        .iter()
        .find(|i| i.name() == name)
        .ok_or_else(|| ServiceError::not_found(format!("no {} named `{name}`", T::KIND)))?;
    Ok(([(axum::http::header::ETAG, etag(snap.version))], Json(item)).into_response())
}

/// `POST /api/<items>`: 201, or 409 when the name exists.
pub async fn create<T: Named + DeserializeOwned>(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PositionQuery>,
    Json(item): Json<T>,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor(&headers), action_name::<T>("create"))
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
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PositionQuery>,
    Json(item): Json<T>,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor(&headers), action_name::<T>("update"))
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
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = ChangeMeta::new(actor(&headers), action_name::<T>("delete"))
        .if_version(if_match(&headers)?);
    let outcome = state
        .service
        .edit::<T>(meta, NamedOp::Delete { name })
        .await?;
    Ok(change_response(StatusCode::OK, outcome))
}

/// `POST /api/rules/{name}/test`: explain a sample request against a rule.
pub async fn test_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(sample): Json<SampleRequest>,
) -> Result<Json<Explanation>, ApiError> {
    Ok(Json(state.service.explain_rule(&name, &sample)?))
}
