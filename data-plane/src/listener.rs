//! The proxy accept loop: HTTP/1.1 and h2c on one port, keep-alive, the
//! client limits of the current snapshot (read per connection), and a
//! graceful stop (no new connections, in-flight requests get a grace
//! period, then connections are dropped).
//!
//! Client limits on a connection (the header timer below is
//! `min(header_read_timeout, client_idle_timeout)`):
//!
//! - A connection that sends no byte (or only part of the HTTP/2 preface)
//!   within the header timer is closed quietly: hyper-util's protocol
//!   detection has no timer of its own.
//! - HTTP/1: one timer per connection (see `exchange`) limits the wait for
//!   every request head, including while an idle keep-alive connection
//!   waits for the next one, and ends the connection when it fires. The
//!   socket is handed to hyper through a `WatchedStream` that notices
//!   whether bytes of a new request arrived after the last response: if so
//!   (slowloris, or a client that stalled mid-head) the accept task writes
//!   `408 Request Timeout` with `Connection: close` and closes; an idle
//!   keep-alive connection with nothing of a new request is closed
//!   quietly, as nginx does. The 408s are counted in
//!   `switchyard_client_header_timeouts_total`.
//! - `max_header_bytes`: the proxy checks every parsed HTTP/1 head exactly
//!   (see `proxy::head`) and answers 431; hyper answers 431 itself to a
//!   head that overflows its read buffer (`max(max_header_bytes, 8 KiB)`).
//!   HTTP/2: the h2 codec's header list size, answered 431.
//! - HTTP/2 connections are pinged every `client_idle_timeout` and closed
//!   when a ping is not answered within `header_read_timeout`.

mod direct;
mod exchange;
mod watched;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use switchyard_shared::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::lazy::LazyPoll;
use crate::metrics::{ConnectionGuard, Metrics};
use crate::proxy::error::ERROR_HEADER;
use crate::proxy::forward::ClientInfo;
use crate::proxy::head::HYPER_MIN_BUF;
use crate::proxy::headers::ip_header_value;
use crate::proxy::upstream_body::UpstreamBody;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;
use direct::Ended;
use exchange::{Exchange, ExchangeBody, HeadClock, Verdict};
use watched::{Handoff, WatchedStream};

/// How long a 408 answer may take to write and to see the client close.
const LINGER: Duration = Duration::from_secs(2);

/// The body of the 408 answer.
const TIMEOUT_BODY: &str = "request timeout: the request head did not arrive in time\n";

/// Serves proxy traffic on `listener` until `shutdown`, then drains.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    let local = listener.local_addr().ok();
    // Rebuilt only when a snapshot changes the limits, not per connection.
    let mut settings = SettingsCache::default();
    // One wait for the whole loop (a fresh one per accepted connection
    // registers with the signal and unregisters again each time), polled
    // only when it woke the task.
    let mut stop_signal = shutdown.clone();
    let mut stop = std::pin::pin!(LazyPoll::new(stop_signal.wait()));
    // Clients often open many connections from one address.
    let mut last_client: Option<(IpAddr, HeaderValue)> = None;

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.as_mut().ready() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let settings = settings.get(proxy.limits());
                let ip = match &last_client {
                    Some((last, value)) if *last == peer.ip() => value.clone(),
                    _ => {
                        let value = ip_header_value(peer.ip());
                        last_client = Some((peer.ip(), value.clone()));
                        value
                    }
                };
                connections.spawn(serve_client(
                    stream,
                    ClientInfo { ip },
                    proxy.clone(),
                    settings,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    connections.close();
    tracing::debug!(
        ?local,
        connections = connections.len(),
        "proxy listener draining"
    );
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?local, ?grace, "grace period over; closing remaining connections");
        }
    }
}

/// Serves one client connection: on the direct path while it can, then
/// (if it needs to) with hyper.
///
/// Not an `async fn`, which would hold its arguments twice (see
/// `Proxy::handle`): the task is copied whole when spawned and when it ends.
#[allow(clippy::manual_async_fn)]
fn serve_client(
    stream: TcpStream,
    client: ClientInfo,
    proxy: Arc<Proxy>,
    settings: Arc<ConnSettings>,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send {
    async move {
        let open = proxy.metrics().connection_opened();
        // Boxed once per connection: the direct path's future holds the
        // request handling and is large; inline, the task would be as large.
        // The box is allocated first and the future built in it: `Box::pin`
        // would build it on the stack and copy all 3.5 KB across.
        let direct = Box::into_pin(Box::write(
            Box::new_uninit(),
            direct::serve(stream, &client, &proxy, &settings, &shutdown),
        ));
        match direct.await {
            Ended::Closed => {}
            Ended::HeadTimeout(stream) => answer_late_head(stream, proxy.metrics()).await,
            Ended::Handover(stream, read) => {
                // Boxed: hyper's connection is large and most connections
                // never get here.
                Box::pin(serve_with_hyper(
                    stream, read, client, open, proxy, settings, shutdown,
                ))
                .await;
            }
        }
    }
}

/// Serves the rest of a connection with hyper (HTTP/1.1 with bodies and
/// upgrades, h2c), starting with the bytes the direct path already read.
async fn serve_with_hyper(
    stream: TcpStream,
    read: Bytes,
    client: ClientInfo,
    open: ConnectionGuard,
    proxy: Arc<Proxy>,
    settings: Arc<ConnSettings>,
    shutdown: Shutdown,
) {
    // hyper writes each response as it comes: no waiting on Nagle's
    // algorithm (the direct path sets it only when a second write comes).
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Connection {
        client,
        handoff: Handoff::default(),
        clock: HeadClock::default(),
        _open: open,
    });
    let io = TokioIo::new(WatchedStream::with_prefix(stream, read, conn.clone()));
    let service = {
        let proxy = proxy.clone();
        let conn = conn.clone();
        service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let exchange = Exchange::begin(conn.clone());
            async move {
                let req = req.map(UpstreamBody::Stream);
                let response = proxy.handle(req, &exchange.conn().client).await;
                Ok::<_, Infallible>(response.map(|body| ExchangeBody::new(body, exchange)))
            }
        })
    };
    let serving = Box::pin(
        settings
            .builder
            .serve_connection_with_upgrades(io, service)
            .into_owned(),
    );
    serve_connection(
        serving,
        conn,
        settings.header_timer,
        proxy.metrics().clone(),
        shutdown,
    )
    .await;
}

/// Drives one connection under its head timer until it ends (after a
/// graceful stop once shutdown is signalled), then answers 408 if the
/// timer ended it inside an HTTP/1 request head.
async fn serve_connection<C: GracefulConnection>(
    mut serving: Pin<Box<C>>,
    conn: Arc<Connection>,
    header_timer: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let late = {
        let first = conn.clock.first_deadline(header_timer);
        let mut timer = std::pin::pin!(LazyPoll::new(tokio::time::sleep_until(first.into())));
        let mut stop = std::pin::pin!(LazyPoll::new(async move { shutdown.wait().await }));
        let (mut timing, mut stopping) = (true, false);
        loop {
            tokio::select! {
                // Whatever the connection has ready goes first: a head that
                // arrived just in time is served.
                biased;
                _ = serving.as_mut() => break false,
                () = stop.as_mut().ready(), if !stopping => {
                    // Ends once the responses in flight are written.
                    serving.as_mut().graceful_shutdown();
                    stopping = true;
                }
                () = timer.as_mut().ready(), if timing => {
                    if !conn.handoff.started() {
                        // Nothing sent in time: close quietly, like an idle
                        // keep-alive connection.
                        return;
                    }
                    if conn.handoff.http2() {
                        // HTTP/2 has its pings (see connection_builder).
                        timing = false;
                        continue;
                    }
                    match conn.clock.check(Instant::now(), header_timer) {
                        Verdict::RearmAt(at) => timer.as_mut().inner_mut().reset(at.into()),
                        Verdict::Late => break true,
                    }
                }
            }
        }
    };
    // hyper's connection and socket handle go first, parking the socket if
    // a request head was cut off.
    drop(serving);
    let Some(stream) = conn.handoff.take() else {
        return;
    };
    if late {
        answer_late_head(stream, &metrics).await;
    }
}

/// Counts a request head that came too late and answers it 408.
async fn answer_late_head(stream: TcpStream, metrics: &Metrics) {
    metrics.header_timeouts.fetch_add(1, Relaxed);
    // Boxed: rare, and its 1 KiB read buffer would otherwise be part of
    // every connection's task, copied when the task is spawned.
    Box::pin(answer_timeout(stream)).await;
}

/// Writes `408 Request Timeout` and closes the connection.
async fn answer_timeout(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 408 Request Timeout\r\n\
         date: {}\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\n\
         connection: close\r\n\
         {ERROR_HEADER}: header-timeout\r\n\r\n{TIMEOUT_BODY}",
        httpdate::fmt_http_date(SystemTime::now()),
        TIMEOUT_BODY.len(),
    );
    let _ = tokio::time::timeout(LINGER, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with unread input would reset the connection, which can
        // destroy the answer before the client reads it: read until the
        // client closes (bounded by LINGER).
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// How connections are served under the limits in force.
struct ConnSettings {
    /// hyper's server, for connections the direct path hands over.
    builder: auto::Builder<TokioExecutor>,
    /// The time a client has for each request head.
    header_timer: Duration,
    /// A request head not complete within this many bytes goes to hyper,
    /// which answers 431 (its read buffer has the same bound).
    head_buffer: usize,
}

/// The settings for the limits in force, built once per change.
#[derive(Default)]
struct SettingsCache {
    current: Option<(Limits, Arc<ConnSettings>)>,
}

impl SettingsCache {
    fn get(&mut self, limits: Limits) -> Arc<ConnSettings> {
        // Compared in place: cloning or moving the limits per connection
        // showed up in profiles.
        if !matches!(&self.current, Some((cached, _)) if *cached == limits) {
            self.current = None;
        }
        let (_, settings) = self.current.get_or_insert_with(|| {
            let settings = Arc::new(ConnSettings {
                builder: connection_builder(&limits),
                header_timer: header_timer(&limits),
                head_buffer: head_buffer(&limits),
            });
            (limits, settings)
        });
        settings.clone()
    }
}

/// The time a client has for each request head, and for its first byte.
fn header_timer(limits: &Limits) -> Duration {
    limits.header_read_timeout.min(limits.client_idle_timeout)
}

/// The read buffer bound for HTTP/1 heads: `max_header_bytes`, at least
/// hyper's minimum.
fn head_buffer(limits: &Limits) -> usize {
    usize::try_from(limits.max_header_bytes.max(HYPER_MIN_BUF)).unwrap_or(usize::MAX)
}

/// An HTTP/1.1 + h2c connection builder applying `limits`.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = limits.max_header_bytes.max(1);
    let idle = limits.client_idle_timeout;
    builder
        .http1()
        // The head timer is the connection's own (serve_connection).
        .header_read_timeout(None)
        // hyper answers 431 to a head that overflows its read buffer (at
        // least 8 KiB, its minimum); the proxy checks every parsed head
        // exactly (proxy::head).
        .max_buf_size(head_buffer(limits))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(idle))
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}

/// Per-connection state shared by the requests of one connection, its
/// socket and its accept task.
struct Connection {
    client: ClientInfo,
    handoff: Handoff,
    clock: HeadClock,
    /// Keeps the active-connection gauge up while the connection lives.
    _open: ConnectionGuard,
}

impl AsRef<Handoff> for Connection {
    fn as_ref(&self) -> &Handoff {
        &self.handoff
    }
}

impl AsRef<HeadClock> for Connection {
    fn as_ref(&self) -> &HeadClock {
        &self.clock
    }
}
