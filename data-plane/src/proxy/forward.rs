//! The `forward` action: pick a server (never an unhealthy one or one with
//! an open breaker), rewrite the request for the upstream hop, send it on
//! the backend's pooled client and stream the response back. Failed tries
//! are retried per the backend's retry policy, within its budget, when the
//! request body can be replayed (empty, or buffered up to `buffer_body`).

use std::collections::VecDeque;
use std::future::Future;

use bytes::{Bytes, BytesMut};
use http::header::{COOKIE, HOST, TE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use switchyard_shared::config::{HashOn, HostHeader, RetryOn, UpstreamProtocol};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers::{add_forwarded, ensure_host, remove_hop_by_hop, HeaderEdits};
use super::upgrade;
use super::upstream_body::UpstreamBody;
use crate::backend::breaker::CircuitState;
use crate::backend::outlier::now_ms;
use crate::backend::retry::{backoff, idempotent};
use crate::backend::{BackendRuntime, Outcome, UpstreamServer};
use crate::deadline::Deadlines;

/// Headers the proxy may add to a request (`Host`, `X-Forwarded-*`).
const FORWARDING_HEADERS: usize = 4;

/// What the proxy knows about the client connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The client's IP as a header value, formatted once per connection.
    pub ip: HeaderValue,
}

/// A forward rule's settings for one request.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub backend: &'a BackendRuntime,
    pub strip_prefix: Option<&'a str>,
    pub add_prefix: Option<&'a str>,
    pub request_headers: &'a HeaderEdits,
    /// Where each try's deadline is kept.
    pub deadlines: &'a Deadlines,
}

/// Sends a request (`parts` and `body`) to a server of the route's
/// backend and returns its response, or the reason it could not.
// Not an `async fn`, which would hold the parts twice (see
// `Proxy::handle`).
#[allow(clippy::manual_async_fn)]
pub fn forward<'a>(
    mut parts: Parts,
    body: UpstreamBody,
    route: Route<'a>,
    client: &'a ClientInfo,
    host: Option<&'a HeaderValue>,
) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'a {
    async move {
        let backend = route.backend;
        let policy = &backend.retries;
        let path_and_query = upstream_path(&parts.uri, route.strip_prefix, route.add_prefix);
        parts.version = match backend.spec.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };
        let upgrade = match backend.spec.protocol {
            UpstreamProtocol::Http1 => upgrade::take(&parts.headers, &mut parts.extensions),
            UpstreamProtocol::Http2 => None,
        };
        // gRPC needs `te: trailers` (the one TE value HTTP/2 allows).
        let te_trailers = parts.headers.get(TE).is_some_and(|v| v == "trailers");
        remove_hop_by_hop(&mut parts.headers);
        if te_trailers {
            parts
                .headers
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(u) = &upgrade {
            u.restore(&mut parts.headers);
        }
        match &backend.spec.host_header {
            HostHeader::Preserve => ensure_host(&mut parts.headers, host),
            // Set per try: the server may change.
            HostHeader::Server => {}
            HostHeader::Custom(value) => {
                if let Ok(v) = HeaderValue::from_str(value) {
                    parts.headers.insert(HOST, v);
                }
            }
        }
        // Room for the forwarding headers: a map hyper made for the client's
        // headers alone would otherwise grow once or twice on the way.
        parts.headers.reserve(FORWARDING_HEADERS);
        add_forwarded(&mut parts.headers, &client.ip, host);
        route.request_headers.apply(&mut parts.headers);
        // Copied out of the headers (they go with the first try), when used.
        let key = if backend.picks_by_key() {
            hash_key(backend.spec.hash_on.as_ref(), &parts.headers, &client.ip).to_vec()
        } else {
            Vec::new()
        };
        backend.retry_budget.earn();

        let may_retry = policy.max_retries > 0;
        let (body, replay) = read_ahead(body, may_retry.then_some(policy.buffer_body)).await?;
        let method_ok = idempotent(&parts.method) || policy.retry_non_idempotent;
        // A body in memory is sent from `replay`, as often as tries need; a
        // streamed one goes once.
        let mut streamed = replay.is_none().then_some(body);
        let mut tried: Vec<usize> = Vec::new();
        // Decided before the first try sets one: each try's server names itself.
        let host_from_server = backend.spec.host_header == HostHeader::Server
            || (parts.version == Version::HTTP_11 && !parts.headers.contains_key(HOST));

        for attempt in 0..=policy.max_retries {
            let (index, server) = pick_admitted(backend, &key, &tried)?;
            set_target(&mut parts, server, &path_and_query, host_from_server);
            if attempt > 0 {
                server
                    .metrics
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let outgoing = match (&replay, streamed.take()) {
                (Some(bytes), _) => Outgoing::Buffered(&parts, bytes),
                (None, Some(body)) => {
                    // The only try: the parts go with it.
                    let taken = std::mem::replace(&mut parts, Request::new(()).into_parts().0);
                    Outgoing::Streamed(Box::new(Request::from_parts(taken, body)))
                }
                // Unreachable: a streamed body is never retried.
                (None, None) => break,
            };
            let result = send(backend, server, outgoing, route.deadlines).await;
            let retry_wanted = match &result {
                Ok(r) => method_ok && policy.retry_statuses.contains(&r.status().as_u16()),
                Err(e) => e.retry_on().is_some_and(|on| {
                    policy.retry_on.contains(&on) && (on == RetryOn::ConnectError || method_ok)
                }),
            };
            if !retry_wanted
                || replay.is_none()
                || attempt >= policy.max_retries
                || !backend.retry_budget.withdraw(now_ms())
            {
                return match upgrade {
                    Some(u) => result.map(|r| u.splice(r)),
                    None => result,
                };
            }
            tracing::debug!(server = %server.address, attempt, "retrying");
            drop(result);
            tried.push(index);
            tokio::time::sleep(backoff(policy, attempt)).await;
        }
        Err(no_server(backend))
    }
}

/// Reads the body ahead for replay when retries are possible: an empty
/// body, or one that ends within `limit` bytes, comes back as bytes to
/// replay; a longer one is streamed on (frames read so far first) and is
/// not retried.
async fn read_ahead(
    body: UpstreamBody,
    limit: Option<u64>,
) -> Result<(UpstreamBody, Option<Bytes>), ProxyError> {
    if body.is_end_stream() {
        return Ok((UpstreamBody::Full(None), Some(Bytes::new())));
    }
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Ok((body, None));
    };
    let hint = body.size_hint();
    if hint.lower() > limit || hint.upper().is_some_and(|u| u > limit) {
        return Ok((body, None));
    }
    let mut body = body;
    let mut frames = VecDeque::new();
    let mut total = 0u64;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(source)) => {
                return Err(
                    match source.downcast::<super::upstream_body::BodyTooLarge>() {
                        Ok(too_large) => ProxyError::BodyTooLarge {
                            limit: too_large.limit,
                        },
                        Err(source) => ProxyError::ClientBody { source },
                    },
                )
            }
            Some(Ok(frame)) => {
                let is_data = frame.is_data();
                total += frame.data_ref().map_or(0, |d| d.len() as u64);
                frames.push_back(frame);
                // Trailers cannot be replayed simply; stream on.
                if total > limit || !is_data {
                    let rest = Box::new(body);
                    return Ok((UpstreamBody::Prefixed { frames, rest }, None));
                }
            }
        }
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
    for f in frames {
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    let bytes = buf.freeze();
    Ok((UpstreamBody::Full(Some(bytes.clone())), Some(bytes)))
}

/// Points the request at `server`, naming it in `Host` when
/// `host_from_server` (the rule asks for it, or an HTTP/1.1 request has
/// no `Host` from the client or the rule).
fn set_target(
    parts: &mut Parts,
    server: &UpstreamServer,
    path: &PathAndQuery,
    host_from_server: bool,
) {
    parts.uri = server.pool.target(&server.authority, path.clone());
    if host_from_server {
        if let Ok(v) = HeaderValue::from_str(server.authority.as_str()) {
            parts.headers.insert(HOST, v);
        }
    }
}

/// What consistent hashing hashes: the configured header or cookie, else
/// (absent, or `client_ip`) the client IP.
fn hash_key<'a>(on: Option<&HashOn>, headers: &'a HeaderMap, ip: &'a HeaderValue) -> &'a [u8] {
    let found = match on {
        Some(HashOn::Header(name)) => headers.get(name.as_str()).map(HeaderValue::as_bytes),
        Some(HashOn::Cookie(name)) => headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes()),
        Some(HashOn::ClientIp) | None => None,
    };
    found.unwrap_or(ip.as_bytes())
}

/// Picks a server whose breaker lets the request through, avoiding the
/// ones already tried when possible.
fn pick_admitted<'a>(
    backend: &'a BackendRuntime,
    key: &[u8],
    tried: &[usize],
) -> Result<(usize, &'a UpstreamServer), ProxyError> {
    let mut avoid = tried.to_vec();
    for _ in 0..=backend.servers.len() {
        let Some((index, server)) = backend.pick_avoiding(key, &avoid) else {
            break;
        };
        if backend.admit(server) {
            return Ok((index, server));
        }
        // Lost a race for the last half-open probe slot.
        avoid.push(index);
    }
    Err(no_server(backend))
}

fn no_server(backend: &BackendRuntime) -> ProxyError {
    let breaker_open = backend
        .servers
        .iter()
        .any(|s| s.health.healthy() && s.circuit_state() != CircuitState::Closed);
    let name = backend.spec.name.clone();
    if breaker_open {
        ProxyError::CircuitOpen { backend: name }
    } else {
        ProxyError::NoServer { backend: name }
    }
}

/// What one try sends.
enum Outgoing<'a> {
    /// Headers and a body in memory, kept for further tries.
    Buffered(&'a Parts, &'a Bytes),
    /// A request whose body streams from the client.
    Streamed(Box<Request<UpstreamBody>>),
}

/// One try on one server, feeding passive health and the breaker (a 5xx
/// answer counts as a failure).
async fn send(
    backend: &BackendRuntime,
    server: &UpstreamServer,
    outgoing: Outgoing<'_>,
    deadlines: &Deadlines,
) -> Result<Response<ProxyBody>, ProxyError> {
    let in_flight = server.start();
    let timeout = backend.try_timeout();
    let sent = std::time::Instant::now();
    let exchange = async {
        match outgoing {
            Outgoing::Buffered(parts, body) => server.pool.send_buffered(parts, body).await,
            // Boxed: a streamed body is the rarer case, and `send`'s future
            // would otherwise sit in every buffered request's too.
            Outgoing::Streamed(req) => Box::pin(server.pool.send(*req)).await,
        }
    };
    let result = deadlines.within(sent + timeout, exchange).await;
    if crate::metrics::request_metrics_on() {
        server.metrics.latency.record(sent.elapsed());
    }
    drop(in_flight);
    match result {
        Ok(Ok(response)) => {
            let outcome = if response.status().is_server_error() {
                Outcome::Failed
            } else {
                Outcome::Answered
            };
            backend.record(server, outcome);
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, ProxyBody::Upstream(body)))
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

/// The path and query sent upstream: `strip_prefix` removed from the path
/// when it starts with it, then `add_prefix` put in front (the result
/// always starts with `/`).
fn upstream_path(uri: &Uri, strip_prefix: Option<&str>, add_prefix: Option<&str>) -> PathAndQuery {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let stripped = strip_prefix.and_then(|p| original.path().strip_prefix(p));
    if stripped.is_none() && add_prefix.is_none() {
        return original;
    }
    let rest = stripped.unwrap_or(original.path());
    let mut s = String::with_capacity(original.as_str().len() + 16);
    if let Some(add) = add_prefix {
        let add = add.trim_end_matches('/');
        if !add.starts_with('/') {
            s.push('/');
        }
        s.push_str(add);
    }
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
        upstream_path(&Uri::from_static(uri), strip, None).to_string()
    }

    fn rewrite(uri: &'static str, strip: Option<&str>, add: &str) -> String {
        upstream_path(&Uri::from_static(uri), strip, Some(add)).to_string()
    }

    #[test]
    fn add_prefix_rewrites_one_prefix_into_another() {
        assert_eq!(
            rewrite("/api/users?x=1", Some("/api"), "/v2"),
            "/v2/users?x=1"
        );
        assert_eq!(rewrite("/api", Some("/api"), "/v2"), "/v2/");
        assert_eq!(rewrite("/users", None, "/v2/"), "/v2/users");
        assert_eq!(rewrite("/users", None, "internal"), "/internal/users");
        assert_eq!(rewrite("/other", Some("/api"), "/v2"), "/v2/other");
    }

    #[test]
    fn hash_keys_come_from_the_configured_header_or_cookie_else_the_ip() {
        let ip = HeaderValue::from_static("10.0.0.1");
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.append(COOKIE, HeaderValue::from_static("a=1; session=s42"));
        let header = HashOn::Header("x-user".into());
        let cookie = HashOn::Cookie("session".into());
        let missing = HashOn::Cookie("nope".into());
        assert_eq!(hash_key(Some(&header), &h, &ip), b"alice");
        assert_eq!(hash_key(Some(&cookie), &h, &ip), b"s42");
        assert_eq!(hash_key(Some(&missing), &h, &ip), b"10.0.0.1");
        assert_eq!(hash_key(Some(&HashOn::ClientIp), &h, &ip), b"10.0.0.1");
        assert_eq!(hash_key(None, &h, &ip), b"10.0.0.1");
    }

    #[tokio::test]
    async fn bodies_within_the_buffer_limit_are_replayable_longer_ones_stream() {
        let (body, replay) = read_ahead(UpstreamBody::full("small"), Some(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(replay.as_deref(), Some(&b"small"[..]));
        assert!(matches!(body, UpstreamBody::Full(Some(_))));
        let (body, replay) = read_ahead(UpstreamBody::full("far too long"), Some(4))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(replay.is_none());
        let all = body.collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(all.as_deref(), Some(&b"far too long"[..]));
        let (_, replay) = read_ahead(UpstreamBody::Full(None), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(replay.as_deref(), Some(&b""[..]));
        let (_, replay) = read_ahead(UpstreamBody::full("x"), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(replay.is_none());
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
