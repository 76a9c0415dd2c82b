//! The admin port: liveness, readiness (a snapshot is applied, and from
//! where) and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::prometheus::{self, Gauges};
use crate::state::NodeState;

pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<NodeState>>) -> Response {
    let connected = state.sync.connected();
    match state.snapshots.load() {
        Some(s) => Json(json!({
            "ready": true,
            "version": s.version(),
            "hash": s.hash(),
            "source": s.source().as_str(),
            "control_plane_connected": connected,
            // Written to the cache folder just after it is applied.
            "persisted_version": state.persist.persisted_version(),
        }))
        .into_response(),
        None => {
            let reason = match state.sync.last_error() {
                Some(e) if !connected => format!(
                    "no snapshot applied yet; control plane {} not reachable: {e}",
                    state.control_plane
                ),
                _ => "no snapshot applied yet".to_owned(),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "ready": false,
                    "reason": reason,
                    "control_plane_connected": connected,
                })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    let snapshot = state.snapshots.load();
    let mut server_health = Vec::new();
    if let Some(s) = &snapshot {
        for (name, backend) in &s.backends {
            for server in &backend.servers {
                server_health.push((name.clone(), server.address.clone(), server.healthy()));
            }
        }
        server_health.sort();
    }
    let gauges = Gauges {
        snapshot_version: snapshot.as_ref().map_or(0, |s| s.version()),
        control_plane_connected: state.sync.connected(),
        server_health,
    };
    let mut text = prometheus::render(&state.metrics, gauges);
    if let Some(s) = &snapshot {
        crate::metrics::families::render_caches(&mut text, &s.content.stats());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
