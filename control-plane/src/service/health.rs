//! Component health (storage, gRPC, file watcher, nodes) for `/api/health`
//! and the gRPC health service.

use serde::Serialize;

use super::Service;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComponentView {
    /// `ok`, `down` or `disabled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodesHealth {
    pub status: &'static str,
    pub connected: usize,
    pub total: usize,
    pub in_sync: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Components {
    pub storage: ComponentView,
    pub grpc: ComponentView,
    pub file_watcher: ComponentView,
    pub nodes: NodesHealth,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// `unavailable` when a required component is down (HTTP 503), else
    /// `degraded` while an alert fires, else `ok`.
    pub status: &'static str,
    /// Alerts firing now (see `alert` events).
    pub alerts: Vec<crate::alerts::ActiveAlert>,
    pub version: u64,
    pub components: Components,
    /// Fleet traffic, from the same data as `/api/metrics`.
    pub traffic: crate::metrics::TrafficSummary,
}

impl Service {
    /// Component health for `/api/health`: storage and gRPC are required;
    /// nodes are reported but their absence is not unhealthy.
    pub async fn health(&self) -> HealthView {
        let store = self.store().clone();
        let storage = match tokio::task::spawn_blocking(move || store.check()).await {
            Ok(Ok(())) => ComponentView {
                status: "ok",
                detail: None,
            },
            Ok(Err(e)) => ComponentView {
                status: "down",
                detail: Some(e.to_string()),
            },
            Err(e) => ComponentView {
                status: "down",
                detail: Some(e.to_string()),
            },
        };
        let grpc = ComponentView {
            status: if self.components().grpc() {
                "ok"
            } else {
                "down"
            },
            detail: None,
        };
        let desired = self.current().version;
        let nodes = self.nodes().list();
        let node_health = NodesHealth {
            status: "ok",
            connected: nodes.iter().filter(|n| n.connected).count(),
            total: nodes.len(),
            in_sync: nodes
                .iter()
                .filter(|n| n.connected && n.acked_version == desired)
                .count(),
        };
        let ok = storage.status == "ok" && grpc.status == "ok";
        let alerts = self.metrics_hub().alerts.active();
        HealthView {
            status: match (ok, alerts.is_empty()) {
                (false, _) => "unavailable",
                (true, false) => "degraded",
                (true, true) => "ok",
            },
            alerts,
            version: desired,
            traffic: self.traffic_summary(),
            components: Components {
                storage,
                grpc,
                file_watcher: ComponentView {
                    status: self.components().file_watcher.label(),
                    detail: Some(self.settings().config_path.display().to_string()),
                },
                nodes: node_health,
            },
        }
    }
}
