//! Alerts from the plan, evaluated by the control plane on every metrics
//! tick from the fleet aggregates:
//!
//! - `error_rate` per rule: 5xx answers / answers over the last `window`
//!   (from cumulative readings, so exact), fires above 5 %;
//! - `latency_p95` per rule: the 95th percentile of the window's latency
//!   histogram (the delta of two cumulative histograms), fires above 1000 ms;
//! - `backend_availability` per backend: healthy servers / servers, counted
//!   over every connected node's latest report, fires below 90 %;
//! - `memory` per connected node: RSS / the node's memory limit (cgroup
//!   `memory.max`, else MemTotal), fires above 80 %.
//!
//! Rules need `min_requests` answers in the window to be judged. An alert
//! fires once when its value crosses the threshold and resolves once when
//! the value is back past the threshold by the hysteresis band (or its
//! subject has no data any more); nothing repeats while it stays firing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::aggregate::FleetSnapshot;
use crate::metrics::totals::Hist;
use crate::time_util::rfc3339_from_unix_ms;

/// Cumulative readings kept for the window; a longer window keeps them
/// spaced out, so memory stays bounded whatever `window / interval`.
pub const MAX_READINGS: usize = 60;

/// Thresholds and the evaluation window (control-plane flags).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Rule alerts look at this much history.
    pub window: Duration,
    /// Fraction of 5xx answers (0.05 = 5 %).
    pub error_rate: f64,
    /// Milliseconds.
    pub p95_ms: f64,
    /// Fraction of healthy servers (0.9 = 90 %).
    pub availability: f64,
    /// Fraction of the node's memory limit (0.8 = 80 %).
    pub memory: f64,
    /// Answers a rule needs in the window to be judged.
    pub min_requests: u64,
    /// How far back past the threshold a value must come to resolve, as a
    /// fraction of the threshold (0.1: an error-rate alert at 5 % resolves
    /// at 4.5 %).
    pub hysteresis: f64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            error_rate: 0.05,
            p95_ms: 1000.0,
            availability: 0.9,
            memory: 0.8,
            min_requests: 10,
            hysteresis: 0.1,
        }
    }
}

/// The four alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertKind {
    ErrorRate,
    LatencyP95,
    BackendAvailability,
    Memory,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::LatencyP95 => "latency_p95",
            Self::BackendAvailability => "backend_availability",
            Self::Memory => "memory",
        }
    }

    /// What the subject names: a rule, a backend or a node.
    pub fn subject_kind(self) -> &'static str {
        match self {
            Self::ErrorRate | Self::LatencyP95 => "rule",
            Self::BackendAvailability => "backend",
            Self::Memory => "node",
        }
    }

    /// Fires above the threshold (else below).
    fn fires_above(self) -> bool {
        !matches!(self, Self::BackendAvailability)
    }

    fn threshold(self, s: &AlertSettings) -> f64 {
        match self {
            Self::ErrorRate => s.error_rate,
            Self::LatencyP95 => s.p95_ms,
            Self::BackendAvailability => s.availability,
            Self::Memory => s.memory,
        }
    }

    fn breaches(self, value: f64, threshold: f64) -> bool {
        if self.fires_above() {
            value > threshold
        } else {
            value < threshold
        }
    }

    fn recovered(self, value: f64, threshold: f64, hysteresis: f64) -> bool {
        let h = hysteresis.clamp(0.0, 1.0);
        if self.fires_above() {
            value <= threshold * (1.0 - h)
        } else {
            // Availability cannot exceed 1: the band stops there.
            value >= (threshold * (1.0 + h)).min(1.0)
        }
    }

    fn describe(self, subject: &str, value: f64, threshold: f64, window: Duration) -> String {
        let secs = window.as_secs_f64();
        match self {
            Self::ErrorRate => format!(
                "rule {subject}: error rate {:.1}% > {:.1}% over the last {secs}s",
                value * 100.0,
                threshold * 100.0
            ),
            Self::LatencyP95 => format!(
                "rule {subject}: p95 latency {value:.0} ms > {threshold:.0} ms over the last {secs}s"
            ),
            Self::BackendAvailability => format!(
                "backend {subject}: {:.0}% of servers healthy < {:.0}%",
                value * 100.0,
                threshold * 100.0
            ),
            Self::Memory => format!(
                "node {subject}: memory {:.0}% of its limit > {:.0}%",
                value * 100.0,
                threshold * 100.0
            ),
        }
    }
}

/// A firing alert, as `/api/health`, `/api/status` and `alert` events show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActiveAlert {
    /// `error_rate`, `latency_p95`, `backend_availability` or `memory`.
    pub alert: &'static str,
    /// `rule`, `backend` or `node`.
    pub subject_kind: &'static str,
    /// The rule, backend or node name.
    pub subject: String,
    /// The latest value (ratios as fractions, latency in ms).
    pub value: f64,
    pub threshold: f64,
    /// The history the value covers (rule alerts); `null` for gauges.
    pub window_seconds: Option<f64>,
    /// When it started firing (RFC 3339).
    pub since: String,
    pub message: String,
}

/// A change the caller publishes: `alert` or `alert_resolved`.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Fired(ActiveAlert),
    Resolved {
        alert: ActiveAlert,
        /// The value that resolved it; `None` when the subject has no data.
        value: Option<f64>,
        duration: Duration,
    },
}

impl Transition {
    /// The event type and data.
    pub fn event(&self) -> (&'static str, serde_json::Value) {
        match self {
            Self::Fired(a) => (
                "alert",
                serde_json::to_value(a).unwrap_or(serde_json::Value::Null),
            ),
            Self::Resolved {
                alert,
                value,
                duration,
            } => {
                let mut data = serde_json::to_value(alert).unwrap_or(serde_json::Value::Null);
                if let Some(obj) = data.as_object_mut() {
                    obj.insert("fired_value".into(), serde_json::json!(alert.value));
                    obj.insert("value".into(), serde_json::json!(value));
                    obj.insert(
                        "reason".into(),
                        serde_json::json!(if value.is_some() {
                            "recovered"
                        } else {
                            "no_data"
                        }),
                    );
                    obj.insert(
                        "duration_seconds".into(),
                        serde_json::json!(duration.as_secs_f64()),
                    );
                }
                ("alert_resolved", data)
            }
        }
    }
}

/// One rule's cumulative figures at a reading.
#[derive(Debug, Clone)]
struct RuleReading {
    requests: u64,
    errors: u64,
    latency: Hist,
}

#[derive(Debug, Clone)]
struct Reading {
    at_ms: u64,
    rules: BTreeMap<String, RuleReading>,
}

impl Reading {
    fn of(fleet: &FleetSnapshot) -> Self {
        Self {
            at_ms: fleet.at_ms,
            rules: fleet
                .totals
                .rules
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        RuleReading {
                            requests: r.requests,
                            errors: r.errors,
                            latency: r.latency.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Firing {
    since_ms: u64,
    alert: ActiveAlert,
}

/// The evaluation state: past readings and the alerts firing now.
#[derive(Debug, Default)]
pub struct Engine {
    settings: AlertSettings,
    readings: VecDeque<Reading>,
    firing: BTreeMap<(AlertKind, String), Firing>,
}

impl Engine {
    pub fn new(settings: AlertSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// Evaluates every alert against the fleet now; returns what started
    /// or stopped firing.
    pub fn evaluate(&mut self, fleet: &FleetSnapshot) -> Vec<Transition> {
        let now_ms = fleet.at_ms;
        let current = Reading::of(fleet);
        let observed = self.observe(&current, fleet);
        self.remember(current);

        let mut out = Vec::new();
        let mut keys: Vec<(AlertKind, String)> = observed.keys().cloned().collect();
        keys.extend(self.firing.keys().cloned());
        keys.sort();
        keys.dedup();
        for key in keys {
            let (value, window) = observed.get(&key).cloned().unwrap_or((None, None));
            let (kind, subject) = (key.0, key.1.clone());
            let threshold = kind.threshold(&self.settings);
            match (self.firing.get_mut(&key), value) {
                (None, Some(v)) if kind.breaches(v, threshold) => {
                    let alert = ActiveAlert {
                        alert: kind.name(),
                        subject_kind: kind.subject_kind(),
                        message: kind.describe(&subject, v, threshold, self.settings.window),
                        subject,
                        value: v,
                        threshold,
                        window_seconds: window.map(|w| w.as_secs_f64()),
                        since: rfc3339_from_unix_ms(now_ms),
                    };
                    self.firing.insert(
                        key,
                        Firing {
                            since_ms: now_ms,
                            alert: alert.clone(),
                        },
                    );
                    out.push(Transition::Fired(alert));
                }
                (None, _) => {}
                (Some(f), Some(v)) if !kind.recovered(v, threshold, self.settings.hysteresis) => {
                    // Still firing: keep the figures fresh, say nothing.
                    f.alert.value = v;
                    f.alert.window_seconds = window.map(|w| w.as_secs_f64());
                    f.alert.message = kind.describe(&subject, v, threshold, self.settings.window);
                }
                (Some(_), value) => {
                    if let Some(f) = self.firing.remove(&key) {
                        out.push(Transition::Resolved {
                            duration: Duration::from_millis(now_ms.saturating_sub(f.since_ms)),
                            alert: f.alert,
                            value,
                        });
                    }
                }
            }
        }
        out
    }

    /// The alerts firing now, in a stable order.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.firing.values().map(|f| f.alert.clone()).collect()
    }

    /// Every subject's value now (`None`: not enough data) and, for rule
    /// alerts, the span of history it covers.
    #[allow(clippy::type_complexity)]
    fn observe(
        &self,
        current: &Reading,
        fleet: &FleetSnapshot,
    ) -> BTreeMap<(AlertKind, String), (Option<f64>, Option<Duration>)> {
        let mut out = BTreeMap::new();
        if let Some(base) = self.base(current.at_ms) {
            let span = Duration::from_millis(current.at_ms.saturating_sub(base.at_ms));
            for (name, now) in &current.rules {
                let empty = RuleReading {
                    requests: 0,
                    errors: 0,
                    latency: Hist::default(),
                };
                // A rule born inside the window counts from zero.
                let before = base.rules.get(name).unwrap_or(&empty);
                let requests = now.requests.saturating_sub(before.requests);
                let errors = now.errors.saturating_sub(before.errors);
                let latency = if before.latency.counts.is_empty() {
                    now.latency.clone()
                } else {
                    now.latency.since(&before.latency)
                };
                let enough = requests >= self.settings.min_requests.max(1);
                let rate = enough.then(|| errors as f64 / requests as f64);
                out.insert((AlertKind::ErrorRate, name.clone()), (rate, Some(span)));
                let p95 = (latency.total() >= self.settings.min_requests.max(1))
                    .then(|| latency.quantile_us(0.95).map(|us| us / 1000.0))
                    .flatten();
                out.insert((AlertKind::LatencyP95, name.clone()), (p95, Some(span)));
            }
        }
        let mut backends: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((backend, _server), view) in &fleet.servers {
            let e = backends.entry(backend.as_str()).or_default();
            e.0 += view.healthy_nodes;
            e.1 += view.reporting_nodes;
        }
        for (backend, (healthy, total)) in backends {
            let value = (total > 0).then(|| healthy as f64 / total as f64);
            out.insert(
                (AlertKind::BackendAvailability, backend.to_owned()),
                (value, None),
            );
        }
        for node in fleet.nodes.iter().filter(|n| n.connected) {
            let value = (node.memory_limit_bytes > 0)
                .then(|| node.rss_bytes as f64 / node.memory_limit_bytes as f64);
            out.insert((AlertKind::Memory, node.node_id.clone()), (value, None));
        }
        out
    }

    /// The reading the window starts from: the newest one at least
    /// `window` old, else the oldest (a window still filling up).
    fn base(&self, now_ms: u64) -> Option<&Reading> {
        let start = now_ms.saturating_sub(self.settings.window.as_millis() as u64);
        self.readings
            .iter()
            .rev()
            .find(|r| r.at_ms <= start)
            .or_else(|| self.readings.front())
    }

    /// Keeps `current` for later windows, dropping readings no window
    /// needs and spacing them out so at most [`MAX_READINGS`] are kept.
    fn remember(&mut self, current: Reading) {
        let window_ms = self.settings.window.as_millis() as u64;
        let spacing = window_ms / MAX_READINGS as u64;
        let now = current.at_ms;
        if let Some(last) = self.readings.back() {
            if now.saturating_sub(last.at_ms) < spacing {
                return;
            }
        }
        self.readings.push_back(current);
        let start = now.saturating_sub(window_ms);
        // The newest reading at or before the window start stays (it is
        // the base); older ones go.
        while self.readings.len() >= 2 && self.readings[1].at_ms <= start {
            self.readings.pop_front();
        }
        while self.readings.len() > MAX_READINGS + 1 {
            self.readings.pop_front();
        }
    }
}

/// The engine behind a lock, as the metrics hub holds it.
#[derive(Debug, Default)]
pub struct Alerts {
    engine: Mutex<Engine>,
}

impl Alerts {
    /// Replaces the settings (at start); firing alerts are kept.
    pub fn configure(&self, settings: AlertSettings) {
        self.lock().settings = settings;
    }

    pub fn evaluate(&self, fleet: &FleetSnapshot) -> Vec<Transition> {
        self.lock().evaluate(fleet)
    }

    pub fn active(&self) -> Vec<ActiveAlert> {
        self.lock().active()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
