//! Keep-alive connections to one upstream server, without hyper-util's
//! generic pool: no keyed map to hash into per request, no boxed
//! connector futures, no per-request spawn to return the connection.
//!
//! HTTP/1.1: requests whose body is in memory run on [`wire`]
//! connections, driven by the request's own task; streamed request bodies
//! and upgrades on hyper's client. Idle connections of either kind wait in
//! a LIFO stack (the most recently used is the warmest); a connection goes
//! back when its response body has been read to the end, and is dropped
//! (closed) otherwise. HTTP/2
//! (prior knowledge): one shared connection, multiplexed, replaced when
//! it closes. Idle HTTP/1.1 connections older than the backend's idle
//! timeout are closed on the next checkout or by [`ServerPool::prune`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::UPGRADE;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::backend::retry::idempotent;
use crate::proxy::upstream_body::{BoxError, UpstreamBody};
use wire::{WireBody, WireConn, WireError};

mod wire;

/// Idle HTTP/1.1 connections kept per server; more are closed on return.
const MAX_IDLE: usize = 1024;

/// Why a request got no response from the server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl UpstreamError {
    /// The request never reached the server.
    pub fn is_connect(&self) -> bool {
        !matches!(self, UpstreamError::Http(_) | UpstreamError::Wire(_))
    }
}

/// How to reach one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The connections to one upstream server.
#[derive(Debug)]
pub struct ServerPool {
    address: String,
    protocol: Protocol,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<IdleConn>>,
    idle_wire: Mutex<Vec<IdleWire>>,
    shared_h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

#[derive(Debug)]
struct IdleWire {
    conn: Box<WireConn>,
    since: Instant,
}

#[derive(Debug)]
struct IdleConn {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServerPool {
    pub fn new(
        address: &str,
        protocol: Protocol,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            address: address.to_owned(),
            protocol,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            idle_wire: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
        })
    }

    /// The request target for `path`: origin-form for HTTP/1.1, absolute
    /// (scheme and authority become `:scheme`/`:authority`) for HTTP/2.
    pub fn target(&self, authority: &Authority, path: PathAndQuery) -> Uri {
        match self.protocol {
            Protocol::Http1 => Uri::from(path),
            Protocol::Http2 => {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(Scheme::HTTP);
                uri.authority = Some(authority.clone());
                uri.path_and_query = Some(path);
                // Scheme, authority and path always form a valid URI.
                Uri::from_parts(uri).unwrap_or_default()
            }
        }
    }

    /// Sends `req` (origin-form URI for HTTP/1.1, absolute for HTTP/2) on
    /// a pooled or new connection. A pooled HTTP/1.1 connection that turns
    /// out closed before the request was written is skipped transparently.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        match self.protocol {
            Protocol::Http1 => {
                let (parts, body) = req.into_parts();
                match body {
                    UpstreamBody::Full(bytes) if self.speaks_wire(&parts) => {
                        self.send_wire(&parts, &bytes.unwrap_or_default()).await
                    }
                    // hyper's clients boxed: their futures are large, and
                    // inline they would make every wire request's future
                    // (copied whole into its callers') as large.
                    body => Box::pin(self.send_h1(Request::from_parts(parts, body))).await,
                }
            }
            Protocol::Http2 => Box::pin(self.send_h2(req)).await,
        }
    }

    /// Whether a request with a body in memory goes over a wire connection
    /// (HTTP/1.1 without an upgrade) rather than hyper's clients.
    fn speaks_wire(&self, parts: &Parts) -> bool {
        self.protocol == Protocol::Http1 && !parts.headers.contains_key(UPGRADE)
    }

    /// Sends a request whose body is in memory, leaving `parts` as they
    /// were for another try: over HTTP/1.1 nothing is copied; hyper's
    /// clients (HTTP/2, upgrades) get a copy of their own.
    pub async fn send_buffered(
        self: &Arc<Self>,
        parts: &Parts,
        body: &Bytes,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        if self.speaks_wire(parts) {
            return self.send_wire(parts, body).await;
        }
        let mut req = Request::new(UpstreamBody::Full(Some(body.clone())));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        // Boxed for the same reason as hyper's clients in `send`.
        Box::pin(self.send(req)).await
    }

    async fn send_wire(
        self: &Arc<Self>,
        parts: &Parts,
        body: &Bytes,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        loop {
            let (mut conn, reused) = match self.checkout_wire() {
                Some(c) => (c, true),
                None => (WireConn::new(Box::pin(self.connect()).await?), false),
            };
            match conn
                .exchange(&parts.method, target, &parts.headers, body)
                .await
            {
                Ok(head) => {
                    let body = WireBody::new(conn, head.framing, head.keep_alive, self.clone());
                    let mut response = Response::new(PooledBody {
                        inner: Inner::Wire(body),
                    });
                    *response.status_mut() = head.status;
                    *response.version_mut() = head.version;
                    *response.headers_mut() = head.headers;
                    return Ok(response);
                }
                // A pooled connection the server closed while it was idle:
                // the request is sent again on another when it cannot have
                // been processed, or repeating it is harmless.
                Err(e)
                    if reused
                        && e.nothing_received()
                        && (e.unsent() || idempotent(&parts.method)) => {}
                Err(e) => return Err(UpstreamError::Wire(e)),
            }
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout_h1() {
                Some(s) => (s, true),
                // Boxed: connecting is rare and its future is large; inline
                // it would be moved along with every request's future.
                None => (Box::pin(self.connect_h1()).await?, false),
            };
            // A returned connection may still be finishing its last
            // response; a closed one errors here and is dropped.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                // Nothing was written: as good as a failed connect.
                return Err(UpstreamError::Handshake(e));
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // After a 101 the connection belongs to the upgrade.
                    let checkin =
                        (parts.status != StatusCode::SWITCHING_PROTOCOLS).then(|| Checkin {
                            sender,
                            pool: self.clone(),
                        });
                    return Ok(Response::from_parts(
                        parts,
                        PooledBody::hyper(body, checkin),
                    ));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe on another connection, once the
                    // stale pooled ones are exhausted.
                    Some(back) if reused => req = back,
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let cached = lock(&self.shared_h2)
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match cached {
            Some(s) => s,
            None => {
                let fresh = Box::pin(self.connect_h2()).await?;
                *lock(&self.shared_h2) = Some(fresh.clone());
                fresh
            }
        };
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        Ok(response.map(|body| PooledBody::hyper(body, None)))
    }

    /// The warmest idle connection, dropping expired ones on the way.
    fn checkout_h1(&self) -> Option<http1::SendRequest<UpstreamBody>> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        while let Some(conn) = idle.pop() {
            if now.duration_since(conn.since) < self.idle_timeout && !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// The warmest idle wire connection still open, dropping expired and
    /// closed ones on the way.
    fn checkout_wire(&self) -> Option<Box<WireConn>> {
        let now = Instant::now();
        let mut idle = lock(&self.idle_wire);
        while let Some(idle_conn) = idle.pop() {
            if now.duration_since(idle_conn.since) < self.idle_timeout
                && idle_conn.conn.is_idle_open()
            {
                return Some(idle_conn.conn);
            }
        }
        None
    }

    fn check_in_wire(&self, conn: Box<WireConn>) {
        let mut idle = lock(&self.idle_wire);
        if idle.len() < MAX_IDLE {
            idle.push(IdleWire {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn check_in(&self, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections past the idle timeout (oldest first).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        idle.retain(|c| now.duration_since(c.since) < self.idle_timeout && !c.sender.is_closed());
        drop(idle);
        lock(&self.idle_wire)
            .retain(|c| now.duration_since(c.since) < self.idle_timeout && c.conn.is_idle_open());
    }

    /// Idle HTTP/1.1 connections waiting for a request.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len() + lock(&self.idle_wire).len()
    }

    async fn connect(&self) -> Result<TcpStream, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Connect)?;
        // Small requests and responses must not wait for Nagle.
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        Ok(stream)
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
        let io = TokioIo::new(self.connect().await?);
        let (sender, conn) = http1::Builder::new()
            // Requests are mostly a head alone: one buffer, one write.
            .writev(false)
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            // Upgrades (WebSocket) take the connection over after a 101.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
        let io = TokioIo::new(self.connect().await?);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(sender)
    }
}

/// The connection a response body returns to its pool when read to the end.
#[derive(Debug)]
struct Checkin {
    sender: http1::SendRequest<UpstreamBody>,
    pool: Arc<ServerPool>,
}

/// An upstream response body; its connection goes back to the pool once
/// the body has been read completely (a body dropped early closes it).
#[derive(Debug)]
pub struct PooledBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Wire(WireBody),
    Hyper {
        body: Incoming,
        checkin: Option<Checkin>,
    },
}

impl PooledBody {
    fn hyper(body: Incoming, checkin: Option<Checkin>) -> Self {
        let mut body = Self {
            inner: Inner::Hyper { body, checkin },
        };
        if body.is_end_stream() {
            body.check_in();
        }
        body
    }

    fn check_in(&mut self) {
        if let Inner::Hyper { checkin, .. } = &mut self.inner {
            if let Some(c) = checkin.take() {
                c.pool.check_in(c.sender);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (body, checkin) = match &mut self.inner {
            Inner::Wire(body) => return Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Hyper { body, checkin } => (body, checkin),
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.check_in(),
            Poll::Ready(Some(Ok(_))) if body.is_end_stream() => self.check_in(),
            Poll::Ready(Some(Err(_))) => *checkin = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Wire(body) => body.is_end_stream(),
            Inner::Hyper { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Wire(body) => body.size_hint(),
            Inner::Hyper { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
