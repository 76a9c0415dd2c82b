//! Data plane tests over real loopback sockets: a fake control plane
//! serving the real gRPC API, real hyper backends, the node in-process.

mod balancing;
mod delta;
mod fake_cp;
mod support;
mod sync;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use tempfile::TempDir;

use fake_cp::{snapshot, FakeCp, FakeState};
use support::*;

const PAGE: &[u8] = b"<h1>Hello from a file blob</h1>\n";

fn config(a: SocketAddr, b: SocketAddr, slow: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
backends:
  - name: pair
    servers: [{{ address: "{a}" }}, {{ address: "{b}" }}]
  - name: dead
    servers: [{{ address: "{dead}" }}]
    timeouts: {{ connect: 500ms }}
  - name: slow
    servers: [{{ address: "{slow}" }}]
    timeouts: {{ request: 300ms }}
content_sources:
  - name: note
    inline: "down for maintenance\n"
  - name: page
    file: pages/index.html
rules:
  - name: note
    match: {{ path_prefix: /note }}
    action: {{ replace: {{ source: note, status: 503, headers: {{ x-note: "yes", cache-control: no-store }} }} }}
  - name: page
    match: {{ path_exact: /page }}
    action: {{ replace: {{ source: page }} }}
  - name: dead
    match: {{ path_prefix: /dead }}
    action: {{ forward: {{ backend: dead }} }}
  - name: slow
    match: {{ path_prefix: /slow }}
    action: {{ forward: {{ backend: slow }} }}
  - name: api
    match: {{ hosts: [api.example.com], path_prefix: /api }}
    action: {{ forward: {{ backend: pair, strip_prefix: /api }} }}
"#
    )
}

/// A fake control plane with version 1, backends, and a node that acked it.
struct World {
    cp: FakeCp,
    a: Backend,
    b: Backend,
    slow: Backend,
    dead: SocketAddr,
    cache: TempDir,
    node: Node,
}

impl World {
    fn yaml(&self) -> String {
        config(self.a.addr, self.b.addr, self.slow.addr, self.dead)
    }
}

fn tempdir() -> TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

async fn world() -> World {
    let a = backend("a", Duration::ZERO).await;
    let b = backend("b", Duration::ZERO).await;
    let slow = backend("slow", Duration::from_secs(3)).await;
    let dead = dead_port();
    let state = Arc::new(FakeState::default());
    let v1 = snapshot(
        &state,
        1,
        &config(a.addr, b.addr, slow.addr, dead),
        &[("pages/index.html", PAGE)],
    );
    *state.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(v1);
    let cp = FakeCp::start(any_port(), state);
    let cache = tempdir();
    let node = start_node(&cp.url(), cache.path()).await;
    cp.state.wait_ack(1).await;
    World {
        cp,
        a,
        b,
        slow,
        dead,
        cache,
        node,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_the_snapshot_says_hello_and_acks() {
    let w = world().await;
    let hellos = w.cp.state.hellos();
    assert_eq!(hellos.len(), 1);
    assert_eq!(hellos[0].node_id, "test-node");
    assert_eq!(hellos[0].build, env!("CARGO_PKG_VERSION"));
    assert_eq!(hellos[0].last_applied_version, 0);

    let json = w.node.wait_version(1).await;
    assert_eq!(json["ready"], true);
    assert_eq!(json["source"], "control_plane");
    assert_eq!(json["control_plane_connected"], true);
    let health = get(&format!("http://{}/healthz", w.node.admin), None).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_round_robin_with_forwarded_headers_and_stripped_prefix() {
    let w = world().await;
    for _ in 0..10 {
        let r = get(&w.node.url("/api/users?id=7"), Some("API.example.com")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(
            r.body == "a /users?id=7" || r.body == "b /users?id=7",
            "{}",
            r.body
        );
        assert_eq!(r.headers["x-seen-x-forwarded-for"], "127.0.0.1");
        assert_eq!(r.headers["x-seen-x-forwarded-proto"], "http");
        assert_eq!(r.headers["x-seen-x-forwarded-host"], "API.example.com");
        assert_eq!(r.headers["x-seen-host"], "API.example.com");
    }
    assert_eq!((w.a.hits(), w.b.hits()), (5, 5));

    // Hop-by-hop headers, and those named by Connection, stay on our hop.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let r = send(
        &client,
        Request::get(w.node.url("/api/x"))
            .header("host", "api.example.com")
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .header("x-forwarded-for", "10.1.1.1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key("x-seen-x-secret"));
    assert_eq!(r.headers["x-seen-x-forwarded-for"], "10.1.1.1, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_with_inline_and_file_content() {
    let w = world().await;
    let note = get(&w.node.url("/note/today"), None).await;
    assert_eq!(note.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(note.body, "down for maintenance\n");
    assert_eq!(note.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(note.headers["x-note"], "yes");
    assert_eq!(note.headers["cache-control"], "no-store");
    assert!(!note.headers.contains_key("x-switchyard-error"));

    let page = get(&w.node.url("/page"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.as_bytes(), PAGE);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        page.headers["content-length"],
        PAGE.len().to_string().as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_get_a_clear_404() {
    let w = world().await;
    let r = get(&w.node.url("/nowhere"), Some("example.com")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, "no route matches GET example.com/nowhere\n");
    assert_eq!(r.headers["x-switchyard-error"], "no-route");
    // The api rule needs its host.
    let r = get(&w.node.url("/api/users"), Some("other.example.com")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_502_and_slow_backend_is_504() {
    let w = world().await;
    let r = get(&w.node.url("/dead"), None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers["x-switchyard-error"], "upstream-connect");
    assert!(
        r.body.contains("backend `dead` is unreachable"),
        "{}",
        r.body
    );

    let started = tokio::time::Instant::now();
    let r = get(&w.node.url("/slow"), None).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.headers["x-switchyard-error"], "upstream-timeout");
    // The 300 ms request timeout fired, not the backend's 3 s delay.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(w.slow.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_h2c_clients() {
    let w = world().await;
    // The authority (not a Host header) carries the host over HTTP/2.
    let answers = h2c_get(
        w.node.proxy,
        &[
            "http://api.example.com/api/a",
            "http://api.example.com/api/b",
            "http://x/page",
        ],
    )
    .await;
    assert_eq!(answers[0].status, StatusCode::OK);
    assert_eq!(answers[1].status, StatusCode::OK);
    let mut bodies = vec![answers[0].body.clone(), answers[1].body.clone()];
    bodies.sort();
    assert_eq!(bodies, ["a /a", "b /b"]);
    assert_eq!(answers[0].headers["x-seen-host"], "api.example.com");
    assert_eq!(answers[2].status, StatusCode::OK);
    assert_eq!(answers[2].body.as_bytes(), PAGE);

    // The pooled client in http2-only mode works too.
    let r = send(&h2c_client(), Request::get(w.node.url("/note"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts a fake control plane with `yaml` as version 1 and a node that
/// acked it.
async fn single(yaml: &str) -> (FakeCp, Node, TempDir) {
    let state = Arc::new(FakeState::default());
    let v1 = snapshot(&state, 1, yaml, &[]);
    *state.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(v1);
    let cp = FakeCp::start(any_port(), state);
    let cache = tempdir();
    let node = start_node(&cp.url(), cache.path()).await;
    cp.state.wait_ack(1).await;
    (cp, node, cache)
}
