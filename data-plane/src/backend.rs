//! Runtime state of one backend: its servers (with active and passive
//! health, circuit breakers and in-flight counts), the pooled upstream
//! client, the load balancer and the retry budget. Kept across snapshots
//! while the backend's definition is unchanged, so pools, counters and
//! health survive reloads.

pub mod balancer;
pub mod breaker;
pub mod health;
pub mod outlier;
pub mod pool;
pub mod retry;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use switchyard_shared::config::{Backend, RetryOn, RetryPolicy, UpstreamProtocol};

use crate::events::EventSink;
use crate::metrics::{Metrics, ServerMetrics};
use balancer::{Balancer, Candidate};
use breaker::{Breaker, BreakerSettings, CircuitState, Transition};
use health::ActiveHealth;
use outlier::{now_ms, HealthChange, Outlier, OutlierSettings};
use pool::{Protocol, ServerPool};
use retry::RetryBudget;

/// One upstream server of a backend.
#[derive(Debug)]
pub struct UpstreamServer {
    /// `host:port` as configured.
    pub address: String,
    /// The same, parsed once so building an upstream URI is a cheap clone.
    pub authority: Authority,
    pub metrics: Arc<ServerMetrics>,
    /// Keep-alive connections to this server (HTTP/1.1, or h2c with prior
    /// knowledge when the backend says `protocol: http2`).
    pub pool: Arc<ServerPool>,
    /// Requests sent and not yet answered (least-requests balancing).
    in_flight: AtomicUsize,
    outlier: Outlier,
    /// Active health-check verdict.
    pub(crate) health: ActiveHealth,
    breaker: Breaker,
    /// The breaker settings (copied so `Candidate` needs no backend).
    breaker_settings: Option<BreakerSettings>,
}

impl UpstreamServer {
    /// Passes active checks and is not passively ejected.
    pub fn healthy(&self) -> bool {
        self.health.healthy() && !self.outlier.is_ejected()
    }

    /// The breaker's state (`closed` when the backend has none).
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Counts a request as in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        self.metrics.requests.fetch_add(1, Relaxed);
        InFlight(self)
    }
}

impl Candidate for UpstreamServer {
    fn eligible(&self) -> bool {
        self.health.healthy()
            && self
                .breaker_settings
                .as_ref()
                .is_none_or(|s| self.breaker.allows(s, now_ms()))
    }
    fn available(&self) -> bool {
        self.outlier.available(now_ms())
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }
}

/// How an attempt on a server ended, for passive health and breakers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived (any status).
    Answered,
    /// Connect error, timeout, broken response, or a 5xx the retry policy
    /// treats as a failure.
    Failed,
}

/// A backend ready to take requests.
#[derive(Debug)]
pub struct BackendRuntime {
    /// The definition this state was built from; an equal definition in a
    /// later snapshot reuses this value.
    pub spec: Backend,
    pub servers: Vec<UpstreamServer>,
    /// Funds retries (at most a configured share of requests).
    pub retry_budget: RetryBudget,
    /// The retry policy in force (see [`effective_retries`]).
    pub retries: RetryPolicy,
    balancer: Balancer,
    outlier: OutlierSettings,
    events: EventSink,
    /// Stops the health checker and the idle-connection reaper with the
    /// runtime.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// Without a `retries` block a backend keeps the safe default: one retry
/// of a connect failure (the request never reached a server).
pub fn effective_retries(spec: &Backend) -> RetryPolicy {
    spec.retries.clone().unwrap_or_else(|| RetryPolicy {
        max_retries: 1,
        retry_on: vec![RetryOn::ConnectError],
        ..RetryPolicy::default()
    })
}

impl Drop for BackendRuntime {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
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
    /// Builds the runtime; servers also present in `previous` (the same
    /// backend's runtime in the last snapshot) keep their health verdict.
    pub fn new(
        spec: &Backend,
        metrics: &Metrics,
        events: &EventSink,
        previous: Option<&BackendRuntime>,
    ) -> Result<Self, BackendError> {
        let breaker_settings = spec.circuit_breaker.as_ref().map(BreakerSettings::from);
        let protocol = match spec.protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
        };
        let servers = spec
            .servers
            .iter()
            .map(|s| {
                let authority = Authority::from_str(&s.address).map_err(|e| BackendError {
                    backend: spec.name.clone(),
                    address: s.address.clone(),
                    reason: e.to_string(),
                })?;
                let health = ActiveHealth::default();
                if let Some(old) =
                    previous.and_then(|p| p.servers.iter().find(|o| o.address == s.address))
                {
                    health.inherit(&old.health);
                }
                Ok(UpstreamServer {
                    address: s.address.clone(),
                    authority,
                    metrics: metrics.server(&spec.name, &s.address),
                    pool: ServerPool::new(
                        &s.address,
                        protocol,
                        spec.timeouts.connect,
                        spec.timeouts.idle,
                    ),
                    in_flight: AtomicUsize::new(0),
                    outlier: Outlier::default(),
                    health,
                    breaker: Breaker::default(),
                    breaker_settings,
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let retries = effective_retries(spec);
        let outlier = spec
            .outlier_detection
            .as_ref()
            .map_or_else(OutlierSettings::default, |o| OutlierSettings {
                consecutive_failures: o.consecutive_failures,
                base_ejection: o.base_ejection,
                max_ejection: o.max_ejection,
            });
        Ok(Self {
            spec: spec.clone(),
            retry_budget: RetryBudget::new(retries.budget_percent, retries.min_retries_per_second),
            retries,
            balancer: Balancer::new(spec.load_balancing, &spec.servers),
            servers,
            outlier,
            events: events.clone(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Starts active health checks (when configured) and the reaper of
    /// idle upstream connections; both stop when the runtime is dropped.
    pub fn start_health_checks(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.extend(health::spawn(self));
        tasks.extend(spawn_reaper(self));
    }

    /// Picks a server with the backend's strategy, never one that fails
    /// its health checks or whose breaker is open, and skipping ejected
    /// ones while any other is available. `key` feeds consistent hashing.
    /// `None` when no server can take the request.
    #[cfg(test)]
    pub fn pick(&self, key: &[u8]) -> Option<&UpstreamServer> {
        let index = self.balancer.pick(&self.servers, key)?;
        self.servers.get(index)
    }

    /// Whether picking a server looks at the request's hash key.
    pub fn picks_by_key(&self) -> bool {
        self.balancer.uses_key()
    }

    /// Like [`pick`](Self::pick), but never one of `avoid` (servers a
    /// retry already failed on) unless nothing else is left.
    pub fn pick_avoiding(&self, key: &[u8], avoid: &[usize]) -> Option<(usize, &UpstreamServer)> {
        if avoid.is_empty() {
            let index = self.balancer.pick(&self.servers, key)?;
            return self.servers.get(index).map(|s| (index, s));
        }
        let view: Vec<Avoiding<'_>> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, server)| Avoiding {
                server,
                avoided: avoid.contains(&i),
            })
            .collect();
        let index = self
            .balancer
            .pick(&view, key)
            .or_else(|| self.balancer.pick(&self.servers, key))?;
        self.servers.get(index).map(|s| (index, s))
    }

    /// Asks the server's breaker to let a request through; reports a
    /// transition to half-open. `false` when the breaker refuses.
    pub fn admit(&self, server: &UpstreamServer) -> bool {
        let Some(settings) = &server.breaker_settings else {
            return true;
        };
        let (ok, transition) = server.breaker.acquire(settings, now_ms());
        self.report_circuit(server, transition);
        ok
    }

    fn report_circuit(&self, server: &UpstreamServer, transition: Option<Transition>) {
        if let Some((from, to)) = transition {
            tracing::warn!(backend = %self.spec.name, server = %server.address, from = from.as_str(), to = to.as_str(), "circuit state changed");
            self.events
                .circuit_state(&self.spec.name, &server.address, from.as_str(), to.as_str());
        }
    }

    /// Feeds passive health with an attempt's outcome; health changes
    /// are logged and sent to the control plane as events.
    pub fn record(&self, server: &UpstreamServer, outcome: Outcome) {
        let now = now_ms();
        let (change, transition) = match outcome {
            Outcome::Answered => (
                server.outlier.record_success(&self.outlier, now),
                server
                    .breaker_settings
                    .as_ref()
                    .and_then(|s| server.breaker.record_success(s)),
            ),
            Outcome::Failed => {
                server.metrics.errors.fetch_add(1, Relaxed);
                (
                    server.outlier.record_failure(&self.outlier, now),
                    server
                        .breaker_settings
                        .as_ref()
                        .and_then(|s| server.breaker.record_failure(s, now)),
                )
            }
        };
        self.report_circuit(server, transition);
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

    /// How long one try waits for the upstream's response head:
    /// `timeouts.per_try`, else `timeouts.request`.
    pub fn try_timeout(&self) -> Duration {
        self.spec
            .timeouts
            .per_try
            .unwrap_or(self.spec.timeouts.request)
    }
}

/// A server seen through a retry's exclusions.
struct Avoiding<'a> {
    server: &'a UpstreamServer,
    avoided: bool,
}

impl Candidate for Avoiding<'_> {
    fn eligible(&self) -> bool {
        !self.avoided && self.server.eligible()
    }
    fn available(&self) -> bool {
        self.server.available()
    }
    fn in_flight(&self) -> usize {
        self.server.in_flight()
    }
}

/// Closes idle upstream connections past the backend's idle timeout even
/// when no request comes to check them out.
fn spawn_reaper(backend: &Arc<BackendRuntime>) -> Option<tokio::task::AbortHandle> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let period = (backend.spec.timeouts.idle / 2).max(Duration::from_millis(100));
    let weak = Arc::downgrade(backend);
    let reaper = async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(backend) = weak.upgrade() else {
                return;
            };
            for server in &backend.servers {
                server.pool.prune();
            }
        }
    };
    Some(handle.spawn(reaper).abort_handle())
}

#[cfg(test)]
mod tests;
