//! Real HTTP backends for the tests: each answers with its own name, the
//! path it saw and selected request headers, and counts its hits. Modes
//! make them misbehave (slow, 503, resetting, dying mid-response,
//! flapping), switchable at run time with [`Backend::set_mode`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Answers every request with this status (and the echo body).
    Status(u16),
    /// Reads the request, then closes the connection without answering.
    Reset,
    /// Sends a response head promising 1000 bytes, 10 of them, and closes.
    DieMidResponse,
    /// Alternates 200 and 503, starting with 200.
    Flapping,
    /// Raw HTTP/1.1: answers every request on a kept-alive connection with
    /// `hello, chunked world` in three chunks and a trailer.
    Chunked,
    /// Raw HTTP/1.1: answers with two conflicting `Content-Length`s.
    Malformed,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    mode: Arc<Mutex<BackendMode>>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str, mode: BackendMode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        Self::serve(listener, name, mode)
    }

    /// Serves on `addr` (e.g. to bring a killed backend back).
    pub async fn start_on(addr: SocketAddr, name: &str, mode: BackendMode) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        Self::serve(listener, name, mode)
    }

    fn serve(listener: TcpListener, name: &str, mode: BackendMode) -> Backend {
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicU64::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let name: Arc<str> = name.into();
        let counter = hits.clone();
        let shared_mode = mode.clone();
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let name = name.clone();
                let counter = counter.clone();
                let mode = shared_mode.clone();
                tokio::spawn(async move {
                    let now = *mode.lock().unwrap_or_else(|e| e.into_inner());
                    if matches!(
                        now,
                        BackendMode::Reset
                            | BackendMode::DieMidResponse
                            | BackendMode::Chunked
                            | BackendMode::Malformed
                    ) {
                        misbehave(stream, now, &counter).await;
                        return;
                    }
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let name = name.clone();
                        let counter = counter.clone();
                        let mode = mode.clone();
                        async move {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            let now = *mode.lock().unwrap_or_else(|e| e.into_inner());
                            let status = match now {
                                BackendMode::Slow(d) => {
                                    tokio::time::sleep(d).await;
                                    200
                                }
                                BackendMode::Status(s) => s,
                                BackendMode::Flapping if n % 2 == 1 => 503,
                                _ => 200,
                            };
                            let mut response = echo(&name, &req);
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            hits,
            connections,
            mode,
            task,
        }
    }

    /// Changes how the backend behaves from the next connection or request.
    pub fn set_mode(&self, mode: BackendMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
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

/// Raw-TCP answers hyper would not give: per request head read, reset,
/// die mid-response, answer chunked (and read the next request) or answer
/// a malformed head.
async fn misbehave(mut stream: tokio::net::TcpStream, mode: BackendMode, hits: &AtomicU64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    loop {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        // GETs only: the head is the whole request.
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            seen.drain(..end + 4);
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let answer: &[u8] = match mode {
            BackendMode::DieMidResponse => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789"
            }
            BackendMode::Chunked => {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\nhello, \r\n8;ext=1\r\nchunked \r\n5\r\nworld\r\n0\r\nx-check: 1\r\n\r\n"
            }
            BackendMode::Malformed => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"
            }
            _ => b"",
        };
        if stream.write_all(answer).await.is_err() || !matches!(mode, BackendMode::Chunked) {
            // Dropping the socket closes it: no (complete) answer.
            return;
        }
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
        "headers": req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::from(v.to_str().unwrap_or(""))))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", name)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
