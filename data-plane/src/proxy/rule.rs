//! A forward rule end to end: the request limits (413 up front and while
//! streaming, the whole-request timeout), the forward itself, and the
//! rule's fallback when forwarding fails or answers a listed status.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use switchyard_shared::config::Limits;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::forward::{forward, ClientInfo, Route};
use super::upstream_body::UpstreamBody;
use crate::snapshot::RuleRuntime;

/// The header marking a fallback answer; its value is the reason.
pub const FALLBACK_HEADER: &str = "x-switchyard-fallback";

/// Forwards `req` per `rule`, answering errors and fallbacks itself.
pub async fn forward_rule(
    req: Request<UpstreamBody>,
    rule: &RuleRuntime,
    route: Route<'_>,
    limits: &Limits,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    rule_name: &str,
) -> Response<ProxyBody> {
    // What a fallback answer needs of the request, kept only if there is one.
    let for_fallback = rule
        .fallback
        .as_ref()
        .map(|_| (req.method().clone(), req.headers().clone()));
    let result = limited_forward(req, route, limits, client, host).await;
    let Some(fallback) = &rule.fallback else {
        return result.unwrap_or_else(|e| error_response(e, rule_name));
    };
    let reason = match &result {
        Ok(r) if fallback.statuses.contains(&r.status().as_u16()) => {
            format!("status-{}", r.status().as_u16())
        }
        Ok(_) => return result.unwrap_or_else(|e| error_response(e, rule_name)),
        Err(e) if e.wants_fallback() => {
            tracing::warn!(rule = rule_name, error = %crate::error::error_chain(e), "serving the fallback");
            e.cause().to_owned()
        }
        Err(_) => return result.unwrap_or_else(|e| error_response(e, rule_name)),
    };
    drop(result);
    rule.metrics.fallbacks.fetch_add(1, Relaxed);
    let (method, headers) = for_fallback.unwrap_or_else(|| (Method::GET, HeaderMap::new()));
    // Boxed: rare, and keeps this future (moved per request) small.
    let mut response = Box::pin(fallback.content.respond(&method, &headers)).await;
    if let Ok(v) = HeaderValue::from_str(&reason) {
        response.headers_mut().insert(FALLBACK_HEADER, v);
    }
    response
}

/// Applies the body limit and the whole-request timeout around `forward`.
async fn limited_forward(
    req: Request<UpstreamBody>,
    route: Route<'_>,
    limits: &Limits,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limit = limits.max_body_bytes;
    // Set by the limited body; only made for a request that has a body.
    let mut exceeded: Option<Arc<AtomicBool>> = None;
    // A request without a body (most GETs) has nothing to limit.
    let req = if limit > 0 && !req.body().is_end_stream() {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        let flag = exceeded.insert(Arc::new(AtomicBool::new(false))).clone();
        req.map(|b| UpstreamBody::Limited {
            inner: Box::new(b),
            seen: 0,
            limit,
            exceeded: flag,
        })
    } else {
        req
    };
    let result = match limits.request_timeout {
        Some(timeout) => tokio::time::timeout(timeout, forward(req, route, client, host))
            .await
            .unwrap_or(Err(ProxyError::RequestTimeout { timeout })),
        None => forward(req, route, client, host).await,
    };
    // A streamed body cut off at the limit surfaces as an upstream error.
    match result {
        Err(_) if exceeded.is_some_and(|e| e.load(Relaxed)) => {
            Err(ProxyError::BodyTooLarge { limit })
        }
        other => other,
    }
}

fn error_response(e: ProxyError, rule_name: &str) -> Response<ProxyBody> {
    tracing::warn!(rule = rule_name, fault = ?e.fault(), retry_safe = e.retry_safe(), error = %crate::error::error_chain(&e), "proxy error");
    e.into_response()
}
