//! Fleet metrics on the control plane: the nodes' cumulative reports
//! aggregated per node and for the fleet ([`aggregate`]), an in-memory
//! time series ([`history`]), the REST view ([`view`]) and Prometheus text
//! ([`prometheus`]). [`run`] ticks once per report interval: it records a
//! history point and publishes a `metrics_update` event.

pub mod aggregate;
pub mod history;
pub mod prometheus;
pub mod totals;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use switchyard_shared::proto;
use tokio::sync::watch;

use crate::error::ServiceError;
use crate::nodes::NodeRegistry;
use crate::service::Service;
use crate::time_util::now_unix_ms;
use aggregate::{Aggregator, FleetSnapshot};
use history::{History, Point, Resolution};

/// The data planes' default report interval, and the tick of history
/// points and `metrics_update` events.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Everything the control plane keeps about traffic.
#[derive(Debug, Default)]
pub struct MetricsHub {
    aggregator: Aggregator,
    history: Mutex<History>,
    /// WebSocket subscribers connected now (for `/metrics`).
    pub websocket_clients: AtomicU64,
    /// Alert state, evaluated on every tick.
    pub alerts: crate::alerts::Alerts,
    /// The tick, in ms (0 until [`run`] starts: the default applies).
    interval_ms: AtomicU64,
}

impl MetricsHub {
    /// Takes a node's report.
    pub fn ingest(&self, node_id: &str, report: &proto::MetricsReport) {
        self.aggregator.ingest(node_id, report, now_unix_ms());
    }

    /// The fleet now, with connection states from the registry.
    pub fn fleet(&self, nodes: &NodeRegistry) -> FleetSnapshot {
        let connected: HashMap<String, bool> = nodes
            .list()
            .into_iter()
            .map(|n| (n.node_id, n.connected))
            .collect();
        self.aggregator.snapshot(&connected, now_unix_ms())
    }

    /// Records one history point for the interval that just ended.
    pub fn record(&self, fleet: &FleetSnapshot) {
        self.lock_history().record(fleet);
    }

    /// The latest fleet point, if any.
    pub fn last_point(&self) -> Option<Point> {
        self.lock_history().fleet.last()
    }

    /// The points of `rule` (or the fleet) over `window`; `None` for a
    /// rule with no series.
    pub fn history(
        &self,
        window: Duration,
        rule: Option<&str>,
    ) -> Option<(Vec<Point>, Resolution)> {
        let h = self.lock_history();
        let now = now_unix_ms();
        match rule {
            None => Some(h.fleet.query(window, now)),
            Some(r) => h.rules.get(r).map(|s| s.query(window, now)),
        }
    }

    /// Seconds between fine history points (the tick).
    pub fn resolution_seconds(&self) -> u64 {
        match self.interval_ms.load(Relaxed) {
            0 => DEFAULT_INTERVAL.as_secs(),
            ms => ms.div_ceil(1000),
        }
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Service {
    /// The `GET /api/metrics` view (`Detail::Full`), or its summary.
    pub fn system_metrics(&self, detail: view::Detail) -> view::SystemMetrics {
        let fleet = self.metrics_hub().fleet(self.nodes());
        self.system_metrics_of(&fleet, detail)
    }

    /// The same view of a fleet snapshot already taken.
    fn system_metrics_of(
        &self,
        fleet: &FleetSnapshot,
        detail: view::Detail,
    ) -> view::SystemMetrics {
        let hub = self.metrics_hub();
        let current = self.current();
        view::system_metrics(
            fleet,
            &current.config,
            self.uptime().as_secs(),
            hub.last_point().as_ref(),
            detail,
        )
    }

    /// The control plane's Prometheus page.
    pub fn prometheus_text(&self) -> String {
        let hub = self.metrics_hub();
        let fleet = hub.fleet(self.nodes());
        let figures = prometheus::ControlPlaneFigures {
            config_version: self.current().version,
            uptime_seconds: self.uptime().as_secs(),
            known_nodes: self.nodes().list().len() as u64,
            events_published: self.events().last_seq(),
            websocket_clients: hub.websocket_clients.load(Relaxed),
            rss_bytes: rss_bytes(),
            alerts: hub.alerts.active(),
        };
        prometheus::render(&fleet, &figures)
    }
}

/// The longest window `GET /api/metrics/history` serves.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The window when none is asked for.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// One chart point of `GET /api/metrics/history`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// End of the interval (RFC 3339).
    pub timestamp: String,
    pub interval_seconds: f64,
    pub request_count: u64,
    pub error_count: u64,
    pub requests_per_second: Option<f64>,
    pub error_rate: Option<f64>,
    /// Milliseconds.
    pub avg_response_time: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Fleet series only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_hit_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub window_seconds: u64,
    /// `null` for the fleet series.
    pub rule: Option<String>,
    /// Seconds between points: the report interval, or 60 beyond an hour.
    pub resolution_seconds: u64,
    pub points: Vec<HistoryPoint>,
}

impl Service {
    /// `GET /api/metrics/history?window=15m&rule=name`.
    pub fn metrics_history(
        &self,
        window: Option<&str>,
        rule: Option<&str>,
    ) -> Result<HistoryView, ServiceError> {
        let window = match window {
            None => DEFAULT_WINDOW,
            Some(w) => humantime::parse_duration(w.trim()).map_err(|e| {
                ServiceError::bad_request(format!("window: {e} (for example 15m, 1h, 24h)"))
            })?,
        };
        if window.is_zero() || window > MAX_WINDOW {
            return Err(ServiceError::bad_request(
                "window: must be more than 0 and at most 24h",
            ));
        }
        let rule = rule.filter(|r| !r.is_empty());
        let known = |r: &str| self.current().config.rules.iter().any(|x| x.name == r);
        let (points, resolution) = match self.metrics_hub().history(window, rule) {
            Some(found) => found,
            // A configured rule without traffic yet has an empty history.
            None if rule.is_some_and(known) => (Vec::new(), Resolution::Fine),
            None => {
                return Err(ServiceError::not_found(format!(
                    "no rule named {:?} has metrics history",
                    rule.unwrap_or_default()
                )))
            }
        };
        let fleet = rule.is_none();
        let points = points
            .iter()
            .map(|p| {
                let secs = p.span_ms as f64 / 1000.0;
                let ms = |us: Option<f32>| us.map(|v| f64::from(v).round() / 1000.0);
                HistoryPoint {
                    timestamp: crate::time_util::rfc3339_from_unix_ms(p.t_ms),
                    interval_seconds: secs,
                    request_count: p.requests,
                    error_count: p.errors,
                    requests_per_second: (p.span_ms > 0).then(|| p.requests as f64 / secs),
                    error_rate: (p.requests > 0).then(|| p.errors as f64 / p.requests as f64),
                    avg_response_time: (p.latency_count > 0)
                        .then(|| p.latency_sum_us as f64 / p.latency_count as f64 / 1000.0),
                    p50: ms(p.p50_us),
                    p95: ms(p.p95_us),
                    p99: ms(p.p99_us),
                    active_connections: fleet.then_some(p.active_connections),
                    cache_hit_ratio: if fleet && p.cache_hits + p.cache_misses > 0 {
                        Some(p.cache_hits as f64 / (p.cache_hits + p.cache_misses) as f64)
                    } else {
                        None
                    },
                }
            })
            .collect();
        Ok(HistoryView {
            window_seconds: window.as_secs(),
            rule: rule.map(str::to_owned),
            resolution_seconds: match resolution {
                Resolution::Fine => self.metrics_hub().resolution_seconds(),
                Resolution::Coarse => history::COARSE_STEP.as_secs(),
            },
            points,
        })
    }
}

/// The traffic figures `/api/status` and `/api/health` show: the same
/// data as `/api/metrics`, summarised.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrafficSummary {
    pub request_count: u64,
    pub error_count: u64,
    pub error_rate: Option<f64>,
    /// Milliseconds.
    pub avg_response_time: Option<f64>,
    /// Milliseconds.
    pub p95: Option<f64>,
    pub requests_per_second: Option<f64>,
    pub active_connections: u64,
    pub reporting_nodes: usize,
}

impl Service {
    pub fn traffic_summary(&self) -> TrafficSummary {
        let m = self.system_metrics(view::Detail::Summary);
        TrafficSummary {
            request_count: m.request_count,
            error_count: m.error_count,
            error_rate: m.error_rate,
            avg_response_time: m.avg_response_time,
            p95: m.latency_ms.p95,
            requests_per_second: m.requests_per_second,
            active_connections: m.active_connections,
            reporting_nodes: m.reporting_nodes,
        }
    }
}

/// Ticks every `interval` until shutdown: a history point, a
/// `metrics_update` event (the fleet summary, without per-node detail) and
/// an alert evaluation (`alert` / `alert_resolved` events on changes).
pub async fn run(
    service: Service,
    interval: Duration,
    alerts: crate::alerts::AlertSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = interval.max(Duration::from_millis(10));
    let hub = service.metrics_hub();
    hub.interval_ms.store(
        u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        Relaxed,
    );
    hub.alerts.configure(alerts);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Folding thousands of rules per node takes a while: on the blocking
        // pool, so acks and API calls are not held up behind it.
        let service = service.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || tick(&service)).await {
            tracing::warn!(error = %e, "metrics interval task failed");
        }
    }
}

/// One interval: fleet snapshot, history point, alerts, `metrics_update`.
fn tick(service: &Service) {
    let started = std::time::Instant::now();
    let hub = service.metrics_hub();
    let fleet = hub.fleet(service.nodes());
    hub.record(&fleet);
    for change in hub.alerts.evaluate(&fleet) {
        let (kind, data) = change.event();
        match &change {
            crate::alerts::Transition::Fired(a) => {
                tracing::warn!(alert = a.alert, subject = %a.subject, "{}", a.message);
            }
            crate::alerts::Transition::Resolved { alert, .. } => {
                tracing::info!(alert = alert.alert, subject = %alert.subject, "alert resolved");
            }
        }
        service.events().publish(kind, data);
    }
    // From the same snapshot: taking another folds every rule again.
    let summary = service.system_metrics_of(&fleet, view::Detail::Summary);
    // Serialized straight to JSON text: a `serde_json::Value` of thousands
    // of rules is tens of MB.
    service.events().publish_json("metrics_update", &summary);
    tracing::debug!(elapsed = ?started.elapsed(), "metrics interval");
}

/// Resident memory of this process (Linux), for `/metrics`.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
