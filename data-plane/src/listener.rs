//! The proxy accept loop: HTTP/1.1 and h2c on one port, keep-alive, the
//! client limits of the current snapshot (read per connection), and a
//! graceful stop (no new connections, in-flight requests get a grace
//! period, then connections are dropped).
//!
//! Limits as hyper applies them: a request head larger than
//! `max_header_bytes` is answered `431`; a head not complete within
//! `header_read_timeout` (slowloris) closes the connection without an
//! answer (hyper sends no 408). HTTP/1.1 keep-alive connections idle for
//! `client_idle_timeout` are closed; since hyper also arms the header
//! timer while waiting for the next request, an idle HTTP/1.1 connection
//! lives at most `min(header_read_timeout, client_idle_timeout)`. HTTP/2
//! connections are pinged at `client_idle_timeout` and closed when the
//! ping is not answered.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use switchyard_shared::config::Limits;
use tokio::net::TcpListener;

use crate::metrics::ConnectionGuard;
use crate::proxy::forward::ClientInfo;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;

/// hyper's smallest read buffer (it panics below).
const MIN_BUF: u64 = 8192;

/// Serves proxy traffic on `listener` until `shutdown`, then drains.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let ip = HeaderValue::from_str(&peer.ip().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
                let conn = Arc::new(Connection {
                    client: ClientInfo { ip },
                    _open: proxy.metrics().connection_opened(),
                });
                let builder = connection_builder(&proxy.limits());
                let proxy = proxy.clone();
                let service = service_fn(move |req| {
                    let proxy = proxy.clone();
                    let conn = conn.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, &conn.client).await) }
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(graceful.watch(conn));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::debug!(
        ?local,
        connections = graceful.count(),
        "proxy listener draining"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?local, ?grace, "grace period over; closing remaining connections");
        }
    }
}

/// An HTTP/1.1 + h2c connection builder applying `limits`.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = limits.max_header_bytes.max(1);
    let idle = limits.client_idle_timeout;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.min(idle))
        // The head must fit the read buffer (at least 8 KiB, hyper's
        // minimum); hyper answers 431 otherwise.
        .max_buf_size(usize::try_from(header_bytes.max(MIN_BUF)).unwrap_or(usize::MAX))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(idle))
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}

/// Per-connection state shared by the requests of one connection.
struct Connection {
    client: ClientInfo,
    /// Keeps the active-connection gauge up while the connection lives.
    _open: ConnectionGuard,
}
