//! Active health checks: one task per backend runtime probes every server
//! with `GET <path>` each interval; `unhealthy_threshold` failed probes in a
//! row take a server out of rotation, `healthy_threshold` good ones bring it
//! back. The task holds only a weak reference, so it ends when a snapshot
//! without this runtime has replaced it (and is aborted on drop).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use http::header::{HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use switchyard_shared::config::HealthCheck;

use super::{BackendRuntime, UpstreamServer};
use crate::proxy::upstream_body::UpstreamBody;

/// One server's active-check state; healthy until probes say otherwise.
#[derive(Debug)]
pub struct ActiveHealth {
    healthy: AtomicBool,
    /// Consecutive probes agreeing with the opposite of `healthy`.
    streak: AtomicU32,
}

impl Default for ActiveHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
        }
    }
}

impl ActiveHealth {
    pub fn healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Carries a previous runtime's verdict over (same server address).
    pub fn inherit(&self, old: &ActiveHealth) {
        self.healthy.store(old.healthy(), Relaxed);
        self.streak.store(old.streak.load(Relaxed), Relaxed);
    }

    /// Records a probe; `Some(new state)` when the server flips.
    pub fn record(&self, ok: bool, check: &HealthCheck) -> Option<bool> {
        if ok == self.healthy() {
            self.streak.store(0, Relaxed);
            return None;
        }
        let n = self.streak.fetch_add(1, Relaxed) + 1;
        let threshold = if ok {
            check.healthy_threshold
        } else {
            check.unhealthy_threshold
        };
        if n < threshold.max(1) {
            return None;
        }
        self.streak.store(0, Relaxed);
        self.healthy.store(ok, Relaxed);
        Some(ok)
    }
}

/// Whether a probe's status counts as healthy.
pub fn expected(check: &HealthCheck, status: StatusCode) -> bool {
    if check.expected_statuses.is_empty() {
        status.is_success() || status.is_redirection()
    } else {
        check.expected_statuses.contains(&status.as_u16())
    }
}

/// Starts the checker of `backend` when it has a health check and a
/// runtime is available; the handle aborts it.
pub fn spawn(backend: &Arc<BackendRuntime>) -> Option<tokio::task::AbortHandle> {
    let check = backend.spec.health_check.clone()?;
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let weak = Arc::downgrade(backend);
    Some(handle.spawn(run(weak, check)).abort_handle())
}

async fn run(backend: Weak<BackendRuntime>, check: HealthCheck) {
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let probes = backend
            .servers
            .iter()
            .map(|server| probe_and_record(&backend, server, &check));
        futures::future::join_all(probes).await;
    }
}

async fn probe_and_record(backend: &BackendRuntime, server: &UpstreamServer, check: &HealthCheck) {
    let result = probe(server, check).await;
    let ok = result.is_ok();
    if let Some(healthy) = server.health.record(ok, check) {
        let reason = match &result {
            Ok(status) => format!(
                "active health check: {} good probes (last {status})",
                check.healthy_threshold
            ),
            Err(e) => format!(
                "active health check: {} failed probes (last: {e})",
                check.unhealthy_threshold
            ),
        };
        tracing::warn!(backend = %backend.spec.name, server = %server.address, healthy, %reason, "health changed");
        backend
            .events
            .backend_health(&backend.spec.name, &server.address, healthy, reason);
    }
}

/// One probe: `Ok(status)` when healthy, else why not.
async fn probe(server: &UpstreamServer, check: &HealthCheck) -> Result<StatusCode, String> {
    let path = PathAndQuery::try_from(check.path.as_str()).map_err(|e| e.to_string())?;
    let mut req = Request::new(UpstreamBody::Full(None));
    *req.uri_mut() = server.pool.target(&server.authority, path);
    if let Ok(host) = HeaderValue::from_str(server.authority.as_str()) {
        req.headers_mut().insert(HOST, host);
    }
    req.headers_mut().insert(
        USER_AGENT,
        HeaderValue::from_static("switchyard-health-check"),
    );
    let attempt = async {
        let response = server
            .pool
            .send(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        // Read the (small) body so the pooled connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, String>(status)
    };
    let status = tokio::time::timeout(check.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", check.timeout))??;
    if expected(check, status) {
        Ok(status)
    } else {
        Err(format!("status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        match serde_json::from_value(serde_json::json!({
            "healthy_threshold": 2, "unhealthy_threshold": 3
        })) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn thresholds_of_consecutive_probes_flip_the_state() {
        let c = check();
        let h = ActiveHealth::default();
        assert!(h.healthy());
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        // A good probe breaks the streak.
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), Some(false));
        assert!(!h.healthy());
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(true, &c), Some(true));
        assert!(h.healthy());
    }

    #[test]
    fn expected_statuses_default_to_2xx_and_3xx() {
        let mut c = check();
        assert!(expected(&c, StatusCode::OK));
        assert!(expected(&c, StatusCode::FOUND));
        assert!(!expected(&c, StatusCode::SERVICE_UNAVAILABLE));
        c.expected_statuses = vec![418];
        assert!(expected(&c, StatusCode::IM_A_TEAPOT));
        assert!(!expected(&c, StatusCode::OK));
    }
}
