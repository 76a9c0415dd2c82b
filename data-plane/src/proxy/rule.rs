//! A forward rule end to end: the request limits (413 up front and while
//! streaming, the whole-request timeout), the forward itself, and the
//! rule's fallback when forwarding fails or answers a listed status.

use std::future::Future;
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
// Not an `async fn`, which would hold the request twice (see
// `Proxy::handle`).
#[allow(clippy::manual_async_fn)]
pub fn forward_rule<'a>(
    req: Request<UpstreamBody>,
    rule: &'a RuleRuntime,
    route: Route<'a>,
    limits: &'a Limits,
    client: &'a ClientInfo,
    host: Option<&'a HeaderValue>,
    rule_name: &'a str,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        // What a fallback answer needs of the request, kept only if there is one.
        let for_fallback = rule
            .fallback
            .as_ref()
            .map(|_| (req.method().clone(), req.headers().clone()));
        // Awaited here, not in a helper future: each nested future is copied
        // whole into its parent once per request.
        let result = match limit_body(req, limits.max_body_bytes) {
            Err(too_large) => Err(too_large),
            Ok((req, exceeded)) => {
                let (parts, body) = req.into_parts();
                let forwarded = forward(parts, body, route, client, host);
                let result = match limits.request_timeout {
                    Some(timeout) => tokio::time::timeout(timeout, forwarded)
                        .await
                        .unwrap_or(Err(ProxyError::RequestTimeout { timeout })),
                    None => forwarded.await,
                };
                // A streamed body cut off at the limit surfaces as an upstream error.
                match result {
                    Err(_) if exceeded.is_some_and(|e| e.load(Relaxed)) => {
                        Err(ProxyError::BodyTooLarge {
                            limit: limits.max_body_bytes,
                        })
                    }
                    other => other,
                }
            }
        };
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
}

/// Applies the body limit (`0`: none): a declared length over it is
/// refused up front; a streamed body is cut off past it and the returned
/// flag is set, telling the caller to answer 413.
#[allow(clippy::type_complexity)]
fn limit_body(
    req: Request<UpstreamBody>,
    limit: u64,
) -> Result<(Request<UpstreamBody>, Option<Arc<AtomicBool>>), ProxyError> {
    // A request without a body (most GETs) has nothing to limit.
    if limit == 0 || req.body().is_end_stream() {
        return Ok((req, None));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let req = req.map(|b| UpstreamBody::Limited {
        inner: Box::new(b),
        seen: 0,
        limit,
        exceeded: exceeded.clone(),
    });
    Ok((req, Some(exceeded)))
}

fn error_response(e: ProxyError, rule_name: &str) -> Response<ProxyBody> {
    tracing::warn!(rule = rule_name, fault = ?e.fault(), retry_safe = e.retry_safe(), error = %crate::error::error_chain(&e), "proxy error");
    e.into_response()
}
