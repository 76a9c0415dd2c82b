//! Request handling: load the current snapshot once, route, then forward or
//! replace. Every response is counted against its rule.

pub mod body;
pub mod error;
pub mod forward;
pub mod head;
pub mod headers;
pub mod rule;
pub mod upgrade;
pub mod upstream_body;

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::header::{ACCEPT_ENCODING, HOST, IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use switchyard_shared::routing::RequestInfo;

use crate::deadline::Deadlines;
use crate::metrics::Metrics;
use crate::snapshot::{RuleAction, SnapshotCell};
use crate::telemetry;
use body::ProxyBody;
use error::{text_response, ProxyError};
use forward::{ClientInfo, Route};
use upstream_body::UpstreamBody;

/// Shared by every proxy connection.
#[derive(Debug)]
pub struct Proxy {
    snapshots: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    deadlines: Arc<Deadlines>,
}

impl Proxy {
    /// `deadlines` must be swept ([`Deadlines::sweep`]) for tries to time out.
    pub fn new(
        snapshots: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        deadlines: Arc<Deadlines>,
    ) -> Self {
        Self {
            snapshots,
            metrics,
            deadlines,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The client limits of the current snapshot (defaults before one).
    pub fn limits(&self) -> switchyard_shared::config::Limits {
        self.snapshots
            .load()
            .map(|s| s.config.limits.clone())
            .unwrap_or_default()
    }

    /// Answers one request; never fails (errors become responses). The
    /// body is the client's stream, or `UpstreamBody::Full(None)` for a
    /// request without one.
    // Not an `async fn`: that would hold the request twice in the future
    // (the argument and its rebinding), and the future is copied whole
    // into its caller's once per request.
    #[allow(clippy::manual_async_fn)]
    pub fn handle<'a>(
        &'a self,
        mut req: Request<UpstreamBody>,
        client: &'a ClientInfo,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
        async move {
            let started = std::time::Instant::now();
            // Loaded once: the request finishes on this version even if a new
            // one is swapped in meanwhile.
            let Some(snapshot) = self.snapshots.load() else {
                return ProxyError::NoSnapshot.into_response();
            };
            let head_limit = snapshot.config.limits.max_header_bytes;
            if head::over_limit(&req, head_limit) {
                return ProxyError::HeaderTooLarge { limit: head_limit }.into_response();
            }
            let host = host_value(&req);
            let matched = {
                let host_str = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
                let info = RequestInfo {
                    method: req.method(),
                    host: host_str,
                    path: req.uri().path(),
                    headers: req.headers(),
                };
                snapshot.routes.route(&info).ok_or_else(|| {
                    format!(
                        "no route matches {} {host_str}{}\n",
                        req.method(),
                        req.uri().path()
                    )
                })
            };
            let index = match matched {
                Ok(index) => index,
                Err(message) => {
                    self.metrics.unmatched_requests.fetch_add(1, Relaxed);
                    return text_response(StatusCode::NOT_FOUND, "no-route", message);
                }
            };
            let Some(rule) = snapshot.rules.get(index) else {
                // The table and the actions come from the same config.
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error: rule index out of range\n".to_owned(),
                );
            };
            let rule_name = snapshot
                .routes
                .rules()
                .get(index)
                .map_or("", |r| r.name.as_str());
            let bytes_in = telemetry::request_bytes(&req);
            let span = telemetry::RequestSpan::start(&mut req, rule_name, &client.ip);
            let response = match &rule.action {
                RuleAction::Replace(r) => r.respond(req.method(), req.headers()).await,
                RuleAction::Forward {
                    backend,
                    strip_prefix,
                    add_prefix,
                } => {
                    if rule.rewrite.is_some() {
                        prepare_for_rewrite(req.headers_mut());
                    }
                    let route = Route {
                        backend,
                        strip_prefix: strip_prefix.as_deref(),
                        add_prefix: add_prefix.as_deref(),
                        request_headers: &rule.request_headers,
                        deadlines: &self.deadlines,
                    };
                    let limits = &snapshot.config.limits;
                    rule::forward_rule(req, rule, route, limits, client, host.as_ref(), rule_name)
                        .await
                }
            };
            let mut response = response;
            rule.response_headers.apply(response.headers_mut());
            let response = match (&rule.rewrite, &rule.action) {
                (Some(rewrite), RuleAction::Forward { .. }) => rewrite.apply(response),
                _ => response,
            };
            telemetry::finish_request(&rule.metrics, started, bytes_in, &response, span);
            response
        }
    }
}

/// A rewritten body must be the whole, uncompressed representation, so the
/// upstream is asked for identity encoding and no ranges: a compressed or
/// 206 answer is passed through unrewritten (see content::rewrite), which
/// would leak original bytes. The client gets the whole rewritten body, 200.
fn prepare_for_rewrite(headers: &mut HeaderMap) {
    for name in [ACCEPT_ENCODING, RANGE, IF_RANGE] {
        headers.remove(name);
    }
}

/// The request's host: the `Host` header, else the URI authority (h2).
fn host_value<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.headers().get(HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}
