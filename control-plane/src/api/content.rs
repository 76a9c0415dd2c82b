//! Content endpoints: the source list and cache commands fanned out to the
//! data planes, answered with each node's confirmation.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::service::{CacheClearView, CacheStatsReport, SourceView};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourcesView {
    pub version: u64,
    pub sources: Vec<SourceView>,
}

/// `GET /api/content/sources`.
#[utoipa::path(get, path = "/api/content/sources", tag = "content",
    responses((status = 200, description = "Content sources with their blob hash and size", body = SourcesView)))]
pub async fn sources(State(state): State<AppState>) -> Json<SourcesView> {
    Json(SourcesView {
        version: state.service.current().version,
        sources: state.service.content_sources(),
    })
}

/// `POST /api/content/cache/clear`: every source on every node.
#[utoipa::path(post, path = "/api/content/cache/clear", tag = "content",
    responses((status = 200, description = "Per-node confirmations", body = CacheClearView)))]
pub async fn clear_all(State(state): State<AppState>) -> Result<Json<CacheClearView>, ApiError> {
    Ok(Json(state.service.clear_cache(None).await?))
}

/// `DELETE /api/content/cache/{source}`: 404 for a source not in the config.
#[utoipa::path(delete, path = "/api/content/cache/{source}", tag = "content",
    params(("source" = String, Path, description = "A content source name")),
    responses((status = 200, description = "Per-node confirmations", body = CacheClearView), (status = 404, description = "Not found", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json")))]
pub async fn clear_source(
    State(state): State<AppState>,
    Path(source): Path<String>,
) -> Result<Json<CacheClearView>, ApiError> {
    Ok(Json(state.service.clear_cache(Some(source)).await?))
}

/// `GET /api/content/cache/stats`: as reported by the nodes.
#[utoipa::path(get, path = "/api/content/cache/stats", tag = "content",
    responses((status = 200, description = "Cache statistics as the nodes reported them", body = CacheStatsReport)))]
pub async fn cache_stats(State(state): State<AppState>) -> Json<CacheStatsReport> {
    Json(state.service.cache_stats())
}
