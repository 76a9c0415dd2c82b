//! The HTTP/1.1 + h2c server loop: accept, answer from [`Bodies`], stop on
//! the shutdown future.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::bodies::Bodies;

/// Serves until `shutdown` completes; open connections are then dropped
/// (the benchmark has no use for a grace period).
pub async fn serve(
    listener: TcpListener,
    bodies: Arc<Bodies>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Running out of descriptors under a connection storm must
                // not end the server: skip this one.
                Err(_) => continue,
            },
            () = &mut shutdown => return Ok(()),
        };
        // Latency benchmarks need small writes sent at once.
        let _ = stream.set_nodelay(true);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = answer(&bodies, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(bodies: &Bodies, path: &str) -> Response<Full<Bytes>> {
    match bodies.for_path(path) {
        Some(body) => {
            let mut resp = Response::new(Full::new(body.bytes.clone()));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(body.content_type));
            resp
        }
        None => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_bodies_and_404() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(Bodies::new()), async {
            let _ = stopped.await;
        }));

        let ok = get(addr, "/prefix/1k").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("content-length: 1024"), "{ok}");
        let html = get(addr, "/page.html").await;
        assert!(html.contains("content-type: text/html"), "{html}");
        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let _ = stop.send(());
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        assert!(matches!(res, Ok(Ok(Ok(())))));
    }
}
