//! Handlers for metrics: `GET /api/metrics` (fleet view with per-node
//! detail), `GET /api/metrics/history` and Prometheus `GET /metrics`.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::metrics::view::{Detail, SystemMetrics};
use crate::metrics::HistoryView;

#[utoipa::path(get, path = "/api/metrics", tag = "metrics",
    responses((status = 200, description = "Fleet metrics from the nodes' reports, with percentiles, backends and per-node detail; unmeasured figures are null", body = SystemMetrics)))]
pub async fn metrics(State(state): State<AppState>) -> Json<SystemMetrics> {
    Json(state.service.system_metrics(Detail::Full))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How far back: `15m`, `1h`, `24h`... (default 15m, at most 24h).
    pub window: Option<String>,
    /// A rule name; the fleet series when absent.
    pub rule: Option<String>,
}

#[utoipa::path(get, path = "/api/metrics/history", tag = "metrics",
    params(HistoryQuery),
    responses(
        (status = 200, description = "One point per report interval (per minute beyond an hour)", body = HistoryView),
        (status = 400, description = "Malformed or out-of-range window", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such rule", body = crate::api::problem::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    Ok(Json(
        state
            .service
            .metrics_history(q.window.as_deref(), q.rule.as_deref())?,
    ))
}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.prometheus_text(),
    )
}
