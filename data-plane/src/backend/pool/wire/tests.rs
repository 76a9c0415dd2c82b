//! Wire connections against a scripted origin on loopback: each request
//! it reads (head and `Content-Length` body) is recorded and answered with
//! the next scripted reply, byte for byte.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::super::{PooledBody, Protocol, ServerPool, UpstreamError};
use super::*;
use crate::proxy::upstream_body::UpstreamBody;

/// A reply that closes the connection without answering.
const HANG_UP: &[u8] = b"";

struct Script {
    address: String,
    requests: Arc<StdMutex<Vec<Vec<u8>>>>,
    connections: Arc<StdMutex<usize>>,
}

/// Answers the n-th request with `replies[n]` (closing the connection
/// after it when `n` is in `closing`), the last reply once they run out.
async fn script(replies: Vec<&'static [u8]>, closing: Vec<usize>) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(StdMutex::new(Vec::new()));
    let connections = Arc::new(StdMutex::new(0));
    let (seen, opened) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            *opened.lock().unwrap() += 1;
            let (seen, replies, closing) = (seen.clone(), replies.clone(), closing.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(request) = read_request(&mut socket, &mut buf).await else {
                        return;
                    };
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(request);
                        seen.len() - 1
                    };
                    let reply = replies[n.min(replies.len() - 1)];
                    if reply.is_empty() {
                        return;
                    }
                    if socket.write_all(reply).await.is_err() || closing.contains(&n) {
                        return;
                    }
                }
            });
        }
    });
    Script {
        address,
        requests,
        connections,
    }
}

/// One request: its head and as many body bytes as it declares.
async fn read_request(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + body_len {
                return Some(buf.drain(..end + 4 + body_len).collect());
            }
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

impl Script {
    fn pool(&self) -> Arc<ServerPool> {
        ServerPool::new(
            &self.address,
            Protocol::Http1,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    fn requests(&self) -> Vec<String> {
        let seen = self.requests.lock().unwrap();
        seen.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

fn request(method: Method, body: Option<&'static str>) -> Request<UpstreamBody> {
    let mut req = Request::new(UpstreamBody::Full(
        body.map(|b| Bytes::from_static(b.as_bytes())),
    ));
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from(PathAndQuery::from_static("/x?y=1"));
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("origin.test"),
    );
    req
}

fn get() -> Request<UpstreamBody> {
    request(Method::GET, None)
}

async fn send(pool: &Arc<ServerPool>, req: Request<UpstreamBody>) -> Response<PooledBody> {
    pool.send(req)
        .await
        .unwrap_or_else(|e| panic!("send failed: {e}"))
}

async fn body_of(response: Response<PooledBody>) -> Bytes {
    match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => panic!("body failed: {e}"),
    }
}

#[tokio::test]
async fn the_request_head_carries_the_target_headers_and_body_length() {
    let origin = script(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        vec![],
    )
    .await;
    let pool = origin.pool();
    let response = send(&pool, request(Method::POST, Some("abc"))).await;
    assert_eq!(body_of(response).await, "ok");
    assert_eq!(
        origin.requests(),
        ["POST /x?y=1 HTTP/1.1\r\nhost: origin.test\r\ncontent-length: 3\r\n\r\nabc"]
    );
}

#[tokio::test]
async fn chunked_bodies_stream_with_their_trailers_and_the_connection_is_reused() {
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n";
    let origin = script(vec![chunked], vec![]).await;
    let pool = origin.pool();
    for _ in 0..3 {
        let response = send(&pool, get()).await;
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(collected.to_bytes(), "hello world");
        assert_eq!(
            trailers.get("x-sum").map(|v| v.as_bytes()),
            Some(&b"11"[..])
        );
        assert_eq!(pool.idle_count(), 1);
    }
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn head_responses_and_informational_answers_carry_no_body() {
    let origin = script(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n",
        ],
        vec![],
    )
    .await;
    let pool = origin.pool();
    let head = send(&pool, request(Method::HEAD, None)).await;
    assert_eq!(head.headers()["content-length"], "100");
    assert!(head.body().is_end_stream());
    assert_eq!(body_of(head).await, "");
    let created = send(&pool, get()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(!created.headers().contains_key("link"));
    assert_eq!(body_of(created).await, "ok");
    let not_modified = send(&pool, get()).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(body_of(not_modified).await, "");
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn a_body_until_close_is_read_whole_and_its_connection_not_pooled() {
    let origin = script(vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"], vec![0]).await;
    let pool = origin.pool();
    let response = send(&pool, get()).await;
    assert_eq!(body_of(response).await, "all of it");
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let origin = script(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
        vec![0],
    )
    .await;
    let pool = origin.pool();
    let response = send(&pool, get()).await;
    let err = response.into_body().collect().await.err().unwrap();
    assert!(
        err.to_string().contains("before the response body ended"),
        "{err}"
    );
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_malformed_head_is_an_error_that_says_what() {
    let origin = script(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx"],
        vec![],
    )
    .await;
    let pool = origin.pool();
    let err = pool.send(get()).await.err().unwrap();
    assert!(!err.is_connect());
    assert!(matches!(
        err,
        UpstreamError::Wire(WireError::Protocol(Http1Error::InvalidContentLength))
    ));
}

#[tokio::test]
async fn stray_bytes_after_a_body_keep_its_connection_out_of_the_pool() {
    let origin = script(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSTRAY",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ],
        vec![],
    )
    .await;
    let pool = origin.pool();
    for _ in 0..2 {
        let response = send(&pool, get()).await;
        assert_eq!(body_of(response).await, "ok");
    }
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn a_pooled_connection_closed_unanswered_is_retried_only_when_harmless() {
    let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    // The second request is read and the connection closed unanswered.
    let origin = script(vec![ok, HANG_UP, ok], vec![]).await;
    let pool = origin.pool();
    assert_eq!(body_of(send(&pool, get()).await).await, "ok");
    assert_eq!(body_of(send(&pool, get()).await).await, "ok");
    assert_eq!(origin.requests().len(), 3, "the GET was sent again");
    assert_eq!(origin.connections(), 2);

    let origin = script(vec![ok, HANG_UP, ok], vec![]).await;
    let pool = origin.pool();
    assert_eq!(
        body_of(send(&pool, request(Method::POST, Some("a"))).await).await,
        "ok"
    );
    let err = pool
        .send(request(Method::POST, Some("b")))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, UpstreamError::Wire(ref e) if e.nothing_received()),
        "{err}"
    );
    assert_eq!(origin.requests().len(), 2, "the POST was not repeated");
}
