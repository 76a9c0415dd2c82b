//! Real HTTP backends for the tests: each answers with its own name, the
//! path it saw and selected request headers, and counts its hits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a backend behaves.
#[derive(Debug, Clone, Copy)]
pub enum BackendMode {
    /// Answers at once with a JSON description of the request.
    Echo,
    /// Waits this long before answering.
    Slow(Duration),
}

pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str, mode: BackendMode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicU64::new(0));
        let name: Arc<str> = name.into();
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let name = name.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let name = name.clone();
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            if let BackendMode::Slow(d) = mode {
                                tokio::time::sleep(d).await;
                            }
                            Ok::<_, Infallible>(echo(&name, &req))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend { addr, hits, task }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn echo(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "host": header("host"),
        "x_forwarded_for": header("x-forwarded-for"),
        "x_forwarded_proto": header("x-forwarded-proto"),
        "x_forwarded_host": header("x-forwarded-host"),
        "connection": header("connection"),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", name)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
