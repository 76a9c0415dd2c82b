//! Handlers for the fleet and the control plane itself: health, nodes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::nodes::NodeStatus;
use crate::service::HealthView;
use crate::time_util::rfc3339_from_unix_ms;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NackView {
    pub version: u64,
    pub error: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node_id: String,
    pub connected: bool,
    /// RFC 3339.
    pub last_seen: String,
    pub acked_version: u64,
    pub last_nack: Option<NackView>,
    pub build: String,
    /// RFC 3339: when the current (or last) connection opened.
    pub connected_at: String,
    /// The node acked the desired version.
    pub in_sync: bool,
    /// RFC 3339 time of the latest metrics report, if any.
    pub metrics_reported_at: Option<String>,
}

impl NodeView {
    pub fn new(s: NodeStatus, desired: u64) -> Self {
        Self {
            in_sync: s.acked_version == desired,
            node_id: s.node_id,
            connected: s.connected,
            last_seen: rfc3339_from_unix_ms(s.last_seen_unix_ms),
            acked_version: s.acked_version,
            last_nack: s.last_nack.map(|n| NackView {
                version: n.version,
                error: n.error,
            }),
            build: s.build,
            connected_at: rfc3339_from_unix_ms(s.connected_at_unix_ms),
            metrics_reported_at: s.metrics.map(|(at, _)| rfc3339_from_unix_ms(at)),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodesView {
    pub desired_version: u64,
    pub nodes: Vec<NodeView>,
}

#[utoipa::path(get, path = "/api/nodes", tag = "status",
    responses((status = 200, description = "The fleet: desired version and every known node", body = NodesView)))]
pub async fn nodes(State(state): State<AppState>) -> Json<NodesView> {
    let desired = state.service.current().version;
    let nodes = state
        .service
        .nodes()
        .list()
        .into_iter()
        .map(|s| NodeView::new(s, desired))
        .collect();
    Json(NodesView {
        desired_version: desired,
        nodes,
    })
}

#[utoipa::path(get, path = "/api/health", tag = "status",
    responses(
        (status = 200, description = "Every required component works: `ok`, or `degraded` while an alert fires", body = crate::service::HealthView),
        (status = 503, description = "A required component is down", body = crate::service::HealthView),
    ))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let view = state.service.health().await;
    // Alerts degrade but do not make the control plane unavailable.
    let code = if view.status == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(view))
}

/// `GET /api/status`.
#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, description = "Version, uptime, counts and nodes", body = crate::service::StatusView)))]
pub async fn status(State(state): State<AppState>) -> Json<crate::service::StatusView> {
    Json(state.service.status())
}
