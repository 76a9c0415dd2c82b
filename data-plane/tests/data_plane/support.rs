//! Test support: polling with a deadline, real hyper backends on loopback,
//! a data plane node started in-process on port 0, and HTTP clients.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use switchyard_data_plane::{DataPlane, DataPlaneError, Options};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Polls `check` until it yields a value or the deadline passes (panics
/// naming `what`).
pub async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`] with an async check.
pub async fn wait_until_async<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn bind_any() -> TcpListener {
    match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    }
}

fn local(l: &TcpListener) -> SocketAddr {
    match l.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("local_addr: {e}"),
    }
}

/// A port nobody listens on (bound, then released).
pub fn dead_port() -> SocketAddr {
    let l = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    match l.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("local_addr: {e}"),
    }
}

/// A backend answering `<name> <path>` (after `delay`), with the headers it
/// saw echoed back as `x-seen-<name>`; counts its requests.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

impl Backend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub async fn backend(name: &'static str, delay: Duration) -> Backend {
    let listener = bind_any().await;
    let addr = local(&listener);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let mut response =
                            Response::new(Full::new(Bytes::from(format!("{name} {path}"))));
                        for header in [
                            "x-forwarded-for",
                            "x-forwarded-proto",
                            "x-forwarded-host",
                            "host",
                            "connection",
                            "x-secret",
                        ] {
                            if let Some(v) = req.headers().get(header) {
                                let echo = format!("x-seen-{header}");
                                if let Ok(n) = http::HeaderName::from_bytes(echo.as_bytes()) {
                                    response.headers_mut().insert(n, v.clone());
                                }
                            }
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        _task: task,
    }
}

/// A data plane node running in this test's runtime.
pub struct Node {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DataPlaneError>>>,
}

pub async fn start_node(control_plane: &str, cache_dir: &Path) -> Node {
    start_node_with(control_plane, cache_dir, true).await
}

/// Without `bind_proxy` the node binds the config's listeners itself
/// (`proxy` is then the unspecified address).
pub async fn start_node_with(control_plane: &str, cache_dir: &Path, bind_proxy: bool) -> Node {
    let options = Options {
        control_plane: control_plane.to_owned(),
        node_id: Some("test-node".to_owned()),
        cache_dir: Some(cache_dir.to_path_buf()),
        metrics_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(3),
        ..Options::default()
    };
    let node = match DataPlane::new(options) {
        Ok(n) => n,
        Err(e) => panic!("data plane: {e}"),
    };
    let proxy = if bind_proxy {
        vec![bind_any().await]
    } else {
        Vec::new()
    };
    let admin = bind_any().await;
    let proxy_addr = proxy
        .first()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), local);
    let admin_addr = local(&admin);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node.serve(proxy, admin, async move {
        let _ = stop_rx.await;
    }));
    Node {
        proxy: proxy_addr,
        admin: admin_addr,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

impl Node {
    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), DataPlaneError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match tokio::time::timeout(DEADLINE, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => panic!("serve panicked: {e}"),
                Err(_) => panic!("serve did not stop in time"),
            },
            None => Ok(()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// `GET /readyz` as (status, JSON).
    pub async fn readyz(&self) -> (StatusCode, serde_json::Value) {
        let r = get(&format!("http://{}/readyz", self.admin), None).await;
        let json = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, json)
    }

    /// Waits until `/readyz` reports `version`.
    pub async fn wait_version(&self, version: u64) -> serde_json::Value {
        wait_until_async(&format!("readyz version {version}"), || async {
            let (status, json) = self.readyz().await;
            (status == StatusCode::OK && json["version"] == version).then_some(json)
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A response, fully read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` with an optional Host header, over HTTP/1.1.
pub async fn get(url: &str, host: Option<&str>) -> Answer {
    let mut req = Request::get(url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    send(&h1_client(), req).await
}

/// Sends a request built by `req` with an empty body.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::request::Builder,
) -> Answer {
    let req = match req.body(Full::new(Bytes::new())) {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    };
    let response = match client.request(req).await {
        Ok(r) => r,
        Err(e) => panic!("request failed: {e:?}"),
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => panic!("body: {e}"),
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends GETs for `uris` on one h2c connection to `proxy` (the URI's
/// authority becomes `:authority`, the socket goes to the proxy).
pub async fn h2c_get(proxy: SocketAddr, uris: &[&str]) -> Vec<Answer> {
    let stream = match tokio::net::TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => panic!("connect: {e}"),
    };
    let (mut sender, conn) =
        match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
        {
            Ok(x) => x,
            Err(e) => panic!("h2 handshake: {e}"),
        };
    tokio::spawn(conn);
    let mut answers = Vec::new();
    for uri in uris {
        let req = match Request::get(*uri).body(Full::new(Bytes::new())) {
            Ok(r) => r,
            Err(e) => panic!("request: {e}"),
        };
        let response = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => panic!("h2 request: {e}"),
        };
        assert_eq!(response.version(), http::Version::HTTP_2);
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => panic!("body: {e}"),
        };
        answers.push(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        });
    }
    answers
}
