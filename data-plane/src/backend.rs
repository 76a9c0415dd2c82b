//! Runtime state of one backend: its servers (with passive health and
//! in-flight counts), the pooled upstream client and the load balancer.
//! Kept across snapshots while the backend's definition is unchanged, so
//! pools, counters and health survive reloads.

pub mod balancer;
pub mod outlier;
pub mod retry;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchyard_shared::config::Backend;

use crate::events::EventSink;
use crate::metrics::{Metrics, ServerMetrics};
use crate::proxy::body::ProxyBody;
use balancer::{Balancer, Candidate};
use outlier::{now_ms, HealthChange, Outlier, OutlierSettings};
use retry::RetryBudget;

/// The pooled keep-alive HTTP/1.1 client towards a backend's servers.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// One upstream server of a backend.
#[derive(Debug)]
pub struct UpstreamServer {
    /// `host:port` as configured.
    pub address: String,
    /// The same, parsed once so building an upstream URI is a cheap clone.
    pub authority: Authority,
    pub metrics: Arc<ServerMetrics>,
    /// Requests sent and not yet answered (least-requests balancing).
    in_flight: AtomicUsize,
    outlier: Outlier,
}

impl UpstreamServer {
    /// False from an ejection until the first success after it.
    pub fn healthy(&self) -> bool {
        !self.outlier.is_ejected()
    }

    /// Counts a request as in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        self.metrics.requests.fetch_add(1, Relaxed);
        InFlight(self)
    }
}

impl Candidate for UpstreamServer {
    fn available(&self) -> bool {
        self.outlier.available(now_ms())
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
}

/// How an attempt on a server ended, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived (any status).
    Answered,
    /// Connect error, timeout or broken response.
    Failed,
}

/// A backend ready to take requests.
#[derive(Debug)]
pub struct BackendRuntime {
    /// The definition this state was built from; an equal definition in a
    /// later snapshot reuses this value.
    pub spec: Backend,
    pub servers: Vec<UpstreamServer>,
    pub client: UpstreamClient,
    /// Funds retries (at most a fixed share of requests).
    pub retry_budget: RetryBudget,
    balancer: Balancer,
    outlier: OutlierSettings,
    events: EventSink,
}

/// A backend definition the data plane cannot use.
#[derive(Debug, thiserror::Error)]
#[error("backend `{backend}`: server address `{address}` is not host:port: {reason}")]
pub struct BackendError {
    backend: String,
    address: String,
    reason: String,
}

/// Decrements a server's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a UpstreamServer);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl BackendRuntime {
    pub fn new(
        spec: &Backend,
        metrics: &Metrics,
        events: &EventSink,
    ) -> Result<Self, BackendError> {
        let servers = spec
            .servers
            .iter()
            .map(|s| {
                let authority = Authority::from_str(&s.address).map_err(|e| BackendError {
                    backend: spec.name.clone(),
                    address: s.address.clone(),
                    reason: e.to_string(),
                })?;
                Ok(UpstreamServer {
                    address: s.address.clone(),
                    authority,
                    metrics: metrics.server(&spec.name, &s.address),
                    in_flight: AtomicUsize::new(0),
                    outlier: Outlier::default(),
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(Self {
            spec: spec.clone(),
            retry_budget: RetryBudget::default(),
            balancer: Balancer::new(spec.load_balancing, &spec.servers),
            servers,
            client: build_client(spec.timeouts.connect, spec.timeouts.idle),
            outlier: OutlierSettings::default(),
            events: events.clone(),
        })
    }

    /// Picks a server with the backend's strategy, skipping ejected ones
    /// while any other is available. `key` feeds consistent hashing.
    /// `None` when the backend has no servers.
    pub fn pick(&self, key: &[u8]) -> Option<&UpstreamServer> {
        let index = self.balancer.pick(&self.servers, key)?;
        self.servers.get(index)
    }

    /// Feeds passive health with an attempt's outcome; health changes
    /// are logged and sent to the control plane as events.
    pub fn record(&self, server: &UpstreamServer, outcome: Outcome) {
        let now = now_ms();
        let change = match outcome {
            Outcome::Answered => server.outlier.record_success(&self.outlier, now),
            Outcome::Failed => {
                server.metrics.errors.fetch_add(1, Relaxed);
                server.outlier.record_failure(&self.outlier, now)
            }
        };
        match change {
            Some(HealthChange::Ejected { failures, period }) => {
                let reason = format!("{failures} consecutive failures; ejected for {period:?}");
                tracing::warn!(backend = %self.spec.name, server = %server.address, %reason, "server ejected");
                self.events
                    .backend_health(&self.spec.name, &server.address, false, reason);
            }
            Some(HealthChange::Readmitted) => {
                tracing::info!(backend = %self.spec.name, server = %server.address, "server readmitted");
                self.events.backend_health(
                    &self.spec.name,
                    &server.address,
                    true,
                    "answered after its ejection".to_owned(),
                );
            }
            None => {}
        }
    }

    /// How long to wait for the upstream's response head.
    pub fn request_timeout(&self) -> Duration {
        self.spec.timeouts.request
    }
}

fn build_client(connect_timeout: Duration, idle: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

#[cfg(test)]
mod tests;
