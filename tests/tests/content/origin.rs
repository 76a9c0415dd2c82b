//! A scriptable HTTP origin for the content tests: counts hits, records the
//! last request's headers, answers slowly when asked (so concurrent misses
//! overlap), streams bodies in separate delayed chunks (so a rewrite sees
//! split matches), honours `Range` like a real server (206) and can be
//! stopped to play a failing origin.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    last_headers: Arc<Mutex<HeaderMap>>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
pub struct Script {
    /// Delay before the head.
    pub delay: Duration,
    pub content_type: &'static str,
    /// Sent as separate chunks, `gap` apart.
    pub chunks: Vec<&'static str>,
    pub gap: Duration,
}

impl Origin {
    pub async fn start(script: Script) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let hits = Arc::new(AtomicU64::new(0));
        let last_headers = Arc::new(Mutex::new(HeaderMap::new()));
        let counter = hits.clone();
        let seen = last_headers.clone();
        let task = tokio::spawn(async move {
            // Owned here, so stopping the origin closes open connections too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                let counter = counter.clone();
                let seen = seen.clone();
                let script = script.clone();
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let counter = counter.clone();
                        let script = script.clone();
                        let range = range_of(req.headers());
                        *seen.lock().unwrap_or_else(|e| e.into_inner()) = req.headers().clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(script.delay).await;
                            Ok::<_, Infallible>(match range {
                                Some(range) => partial(&script, range),
                                None => answer(script),
                            })
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            hits,
            last_headers,
            task,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// The headers of the last request received (empty before any).
    pub fn last_headers(&self) -> HeaderMap {
        self.last_headers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting and closes every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(script: Script) -> Response<Body> {
    let gap = script.gap;
    let stream = futures::stream::unfold(
        (script.chunks.into_iter(), true),
        move |(mut chunks, first)| async move {
            let chunk = chunks.next()?;
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk.as_bytes()))),
                (chunks, false),
            ))
        },
    );
    Response::builder()
        .header("content-type", script.content_type)
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_else(|_| Response::new(http_body_util::Empty::new().boxed()))
}

/// `bytes=a-b` or `bytes=a-` (all these tests need), as start and
/// inclusive end (`None`: to the end).
fn range_of(headers: &HeaderMap) -> Option<(usize, Option<usize>)> {
    let spec = headers
        .get("range")?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start.parse().ok()?, end))
}

/// A 206 with the requested slice of the whole body, in one chunk, as a
/// real origin answers a range request.
fn partial(script: &Script, (start, end): (usize, Option<usize>)) -> Response<Body> {
    let whole = script.chunks.concat();
    let end = end.unwrap_or(usize::MAX).min(whole.len().saturating_sub(1));
    let slice = whole.get(start..=end).unwrap_or("").to_owned();
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header("content-type", script.content_type)
        .header(
            "content-range",
            format!("bytes {start}-{end}/{}", whole.len()),
        )
        .body(http_body_util::Full::new(Bytes::from(slice)).boxed())
        .unwrap_or_else(|_| Response::new(http_body_util::Empty::new().boxed()))
}
