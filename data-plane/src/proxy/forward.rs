//! The `forward` action: pick a server, rewrite the request for the
//! upstream hop, send it on the backend's pooled client and stream the
//! response back, retrying connect failures within the retry budget.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers::{add_forwarded, ensure_host, remove_hop_by_hop};
use crate::backend::{BackendRuntime, Outcome, UpstreamServer};

/// What the proxy knows about the client connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The client's IP as a header value, formatted once per connection.
    pub ip: HeaderValue,
}

/// Attempts per request when the first cannot connect.
const MAX_ATTEMPTS: usize = 2;
/// Ceiling of the first retry's jittered backoff; doubles per retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// Sends `req` to a server of `backend` and returns its response, or the
/// reason it could not. A connect failure (the request never reached a
/// server) is retried on another server when the request has no body and
/// the backend's retry budget allows it.
pub async fn forward(
    req: Request<Incoming>,
    backend: &BackendRuntime,
    strip_prefix: Option<&str>,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let path_and_query = upstream_path(&parts.uri, strip_prefix);
    parts.version = Version::HTTP_11;
    remove_hop_by_hop(&mut parts.headers);
    ensure_host(&mut parts.headers, host);
    add_forwarded(&mut parts.headers, &client.ip, host);
    backend.retry_budget.earn();
    // Only a bodiless request can be sent again; keep what a retry needs
    // only when one is possible at all.
    let template =
        (body.is_end_stream() && backend.servers.len() > 1 && backend.retry_budget.can_afford())
            .then(|| (parts.method.clone(), parts.headers.clone()));
    let mut first = Some((parts, ProxyBody::Stream(body)));

    let mut tried: Option<&UpstreamServer> = None;
    for attempt in 0..MAX_ATTEMPTS {
        let server = pick(backend, client, tried)?;
        let (mut parts, body) = match (first.take(), &template) {
            (Some(p), _) => p,
            (None, Some((method, headers))) => {
                let mut req = Request::new(ProxyBody::Full(None));
                *req.method_mut() = method.clone();
                *req.headers_mut() = headers.clone();
                *req.version_mut() = Version::HTTP_11;
                req.into_parts()
            }
            (None, None) => break,
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(server.authority.clone());
        uri.path_and_query = Some(path_and_query.clone());
        // Parts with scheme, authority and path always form a valid URI.
        parts.uri = Uri::from_parts(uri).unwrap_or_default();
        if attempt > 0 {
            server.metrics.retries.fetch_add(1, Relaxed);
        }
        match send(backend, server, Request::from_parts(parts, body)).await {
            Ok(response) => return Ok(response),
            Err(e)
                if e.retry_safe()
                    && template.is_some()
                    && attempt + 1 < MAX_ATTEMPTS
                    && backend.retry_budget.withdraw() =>
            {
                tracing::debug!(error = %e, "retrying on another server");
                tried = Some(server);
                let ceiling = RETRY_BACKOFF.saturating_mul(1 << attempt);
                let jitter = rand::random_range(0..=ceiling.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
    // Unreachable in practice: the loop returns on its last attempt.
    Err(ProxyError::NoServer {
        backend: backend.spec.name.clone(),
    })
}

/// Picks a server, avoiding the one that just failed when possible.
fn pick<'a>(
    backend: &'a BackendRuntime,
    client: &ClientInfo,
    avoid: Option<&UpstreamServer>,
) -> Result<&'a UpstreamServer, ProxyError> {
    let no_server = || ProxyError::NoServer {
        backend: backend.spec.name.clone(),
    };
    let mut server = backend.pick(client.ip.as_bytes()).ok_or_else(no_server)?;
    if let Some(avoid) = avoid {
        // Strategies such as hashing pick the same server again: walk on.
        for _ in 0..backend.servers.len() {
            if !std::ptr::eq(server, avoid) {
                break;
            }
            server = backend.pick(&[]).ok_or_else(no_server)?;
        }
    }
    Ok(server)
}

/// One attempt on one server, feeding passive health.
async fn send(
    backend: &BackendRuntime,
    server: &UpstreamServer,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let in_flight = server.start();
    let timeout = backend.request_timeout();
    let sent = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, backend.client.request(req)).await;
    server.metrics.latency.record(sent.elapsed());
    drop(in_flight);
    match result {
        Ok(Ok(response)) => {
            backend.record(server, Outcome::Answered);
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, ProxyBody::Stream(body)))
        }
        Ok(Err(source)) => {
            backend.record(server, Outcome::Failed);
            let backend = backend.spec.name.clone();
            let server = server.address.clone();
            Err(if source.is_connect() {
                ProxyError::Connect {
                    backend,
                    server,
                    source,
                }
            } else {
                ProxyError::Upstream {
                    backend,
                    server,
                    source,
                }
            })
        }
        Err(_elapsed) => {
            backend.record(server, Outcome::Failed);
            Err(ProxyError::Timeout {
                backend: backend.spec.name.clone(),
                server: server.address.clone(),
                timeout,
            })
        }
    }
}

/// The path and query sent upstream, with `strip_prefix` removed from the
/// path when it starts with it (the result always starts with `/`).
fn upstream_path(uri: &Uri, strip_prefix: Option<&str>) -> PathAndQuery {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Some(prefix) = strip_prefix else {
        return original;
    };
    let Some(rest) = original.path().strip_prefix(prefix) else {
        return original;
    };
    let mut s = String::with_capacity(original.as_str().len() + 1);
    if !rest.starts_with('/') {
        s.push('/');
    }
    s.push_str(rest);
    if let Some(q) = original.query() {
        s.push('?');
        s.push_str(q);
    }
    PathAndQuery::try_from(s).unwrap_or(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &'static str, strip: Option<&str>) -> String {
        upstream_path(&Uri::from_static(uri), strip).to_string()
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        assert_eq!(path("/api/users?x=1", Some("/api")), "/users?x=1");
        assert_eq!(path("/api", Some("/api")), "/");
        assert_eq!(path("/api/", Some("/api/")), "/");
        assert_eq!(path("/api/v1", Some("/api/")), "/v1");
        assert_eq!(path("/other?q", Some("/api")), "/other?q");
        assert_eq!(path("/api/x?q", None), "/api/x?q");
        assert_eq!(path("http://h.example", None), "/");
    }
}
