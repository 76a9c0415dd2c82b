//! Two tiny demo backends for the standalone run, so the example config's
//! forwarding rules answer out of the box. Each echoes what it received.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Serves the demo backend `name` on `listener` until the task is dropped.
pub async fn serve(name: &'static str, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(answer(name, peer, &req))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(name: &str, peer: SocketAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut text = format!(
        "demo backend {name} answered {} {}\nconnection from {peer}\n",
        req.method(),
        req.uri()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
