//! The pool against a real origin on loopback that counts its connections
//! and can close each one after a given number of answers.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

struct Origin {
    address: String,
    connections: Arc<AtomicUsize>,
}

/// Answers `200 hello` to every request head; closes a connection after
/// `answers_per_connection` answers (keep-alive otherwise).
async fn origin(answers_per_connection: usize) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut answered = 0;
                let mut chunk = [0u8; 4096];
                while answered < answers_per_connection {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                }
            });
        }
    });
    Origin {
        address,
        connections,
    }
}

fn pool(origin: &Origin) -> Arc<ServerPool> {
    ServerPool::new(
        &origin.address,
        Protocol::Http1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
}

fn get(pool: &ServerPool) -> Request<UpstreamBody> {
    let authority = Authority::from_static("origin.test");
    let mut req = Request::new(UpstreamBody::Full(None));
    *req.uri_mut() = pool.target(&authority, PathAndQuery::from_static("/x"));
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("origin.test"),
    );
    req
}

async fn body_of(response: Response<PooledBody>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn a_connection_read_to_the_end_is_reused() {
    let origin = origin(usize::MAX).await;
    let pool = pool(&origin);
    for _ in 0..5 {
        let response = pool.send(get(&pool)).await.unwrap();
        assert_eq!(body_of(response).await, "hello");
        assert_eq!(pool.idle_count(), 1);
    }
    assert_eq!(origin.connections.load(SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_early_does_not_return_its_connection() {
    let origin = origin(usize::MAX).await;
    let pool = pool(&origin);
    let response = pool.send(get(&pool)).await.unwrap();
    drop(response);
    assert_eq!(pool.idle_count(), 0);
    let response = pool.send(get(&pool)).await.unwrap();
    assert_eq!(body_of(response).await, "hello");
    assert_eq!(origin.connections.load(SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_transparently() {
    // One answer per connection: every pooled connection is dead on reuse.
    let origin = origin(1).await;
    let pool = pool(&origin);
    for _ in 0..4 {
        let response = pool.send(get(&pool)).await.unwrap();
        assert_eq!(body_of(response).await, "hello");
    }
    assert_eq!(origin.connections.load(SeqCst), 4);
}

#[tokio::test]
async fn idle_connections_past_the_timeout_are_pruned() {
    let origin = origin(usize::MAX).await;
    let pool = ServerPool::new(
        &origin.address,
        Protocol::Http1,
        Duration::from_secs(1),
        Duration::from_millis(1),
    );
    let response = pool.send(get(&pool)).await.unwrap();
    assert_eq!(body_of(response).await, "hello");
    assert_eq!(pool.idle_count(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    pool.prune();
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error() {
    // Bind then drop: nothing listens on the port any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let pool = ServerPool::new(
        &address,
        Protocol::Http1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let err = pool.send(get(&pool)).await.err().unwrap();
    assert!(err.is_connect(), "{err}");
}
