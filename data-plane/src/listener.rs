//! The proxy accept loop: HTTP/1.1 and h2c on one port, keep-alive, and a
//! graceful stop (no new connections, in-flight requests get a grace
//! period, then connections are dropped).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::ConnectionGuard;
use crate::proxy::forward::ClientInfo;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;

/// Slow clients get this long to send a request head (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves proxy traffic on `listener` until `shutdown`, then drains.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
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
                let proxy = proxy.clone();
                let service = service_fn(move |req| {
                    let proxy = proxy.clone();
                    let conn = conn.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, &conn.client).await) }
                });
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
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

/// Per-connection state shared by the requests of one connection.
struct Connection {
    client: ClientInfo,
    /// Keeps the active-connection gauge up while the connection lives.
    _open: ConnectionGuard,
}
