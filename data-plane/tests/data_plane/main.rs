//! Data plane tests over real loopback sockets: a fake control plane
//! serving the real gRPC API, real hyper backends, the node in-process.

mod fake_cp;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use switchyard_shared::proto;
use switchyard_shared::proto::node_message::Msg as NodeMsg;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_snapshot_is_nacked_and_the_old_one_kept() {
    let w = world().await;
    let bad = w.yaml().replace("backend: pair", "backend: nowhere");
    let v2 = snapshot(&w.cp.state, 2, &bad, &[("pages/index.html", PAGE)]);
    w.cp.state.push(v2).await;
    let error = w.cp.state.wait_nack(2).await;
    assert!(error.contains("unknown backend `nowhere`"), "{error}");
    assert!(error.contains("rules[4].action.forward.backend"), "{error}");

    let (status, json) = w.node.readyz().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["version"], 1);
    let r = get(&w.node.url("/api/x"), Some("api.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);

    // A later valid version still applies.
    let v3 = snapshot(&w.cp.state, 3, &w.yaml(), &[("pages/index.html", PAGE)]);
    w.cp.state.push(v3).await;
    w.cp.state.wait_ack(3).await;
    w.node.wait_version(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_fails_its_hash_is_nacked() {
    let w = world().await;
    let new_page: &[u8] = b"<h1>version two</h1>\n";
    let v2 = snapshot(&w.cp.state, 2, &w.yaml(), &[("pages/index.html", new_page)]);
    // Serve different bytes under the announced digest.
    let sha = sha256_hex(new_page);
    w.cp.state
        .blobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sha.clone(), b"<h1>tampered blob!!!</h1>".to_vec());
    w.cp.state.push(v2).await;
    let error = w.cp.state.wait_nack(2).await;
    assert!(error.contains("content source `page`"), "{error}");
    assert!(error.contains(&sha), "{error}");

    // Still version 1, still the old page; nothing tampered is cached.
    let page = get(&w.node.url("/page"), None).await;
    assert_eq!(page.body.as_bytes(), PAGE);
    assert!(!w.cache.path().join("blobs").join(&sha).exists());

    // Serving the right bytes makes the same version apply.
    w.cp.state
        .blobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sha, new_page.to_vec());
    let v2 = snapshot(&w.cp.state, 2, &w.yaml(), &[("pages/index.html", new_page)]);
    w.cp.state.push(v2).await;
    w.cp.state.wait_ack(2).await;
    let page = get(&w.node.url("/page"), None).await;
    assert_eq!(page.body.as_bytes(), new_page);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_from_the_cached_snapshot_while_the_control_plane_is_down() {
    let w = world().await;
    let World {
        cp,
        node,
        cache,
        a,
        b,
        ..
    } = w;
    assert!(node.stop().await.is_ok());
    let cp_url = cp.url();
    drop(cp.stop());

    let node = start_node(&cp_url, cache.path()).await;
    let json = node.wait_version(1).await;
    assert_eq!(json["source"], "cached");
    assert_eq!(json["control_plane_connected"], false);
    let page = get(&node.url("/page"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.as_bytes(), PAGE);
    let r = get(&node.url("/api/x"), Some("api.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(a.hits() + b.hits(), 1);
    let metrics = get(&format!("http://{}/metrics", node.admin), None).await;
    assert!(
        metrics.body.contains("switchyard_snapshot_version 1\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_ignored_and_readyz_waits_for_the_control_plane() {
    let cache = tempdir();
    let _ = std::fs::write(cache.path().join("snapshot.pb"), b"\xff\xff not a snapshot");
    let node = start_node(&format!("http://{}", dead_port()), cache.path()).await;
    let (status, json) = wait_until_async("readyz reason", || async {
        let (status, json) = node.readyz().await;
        json["reason"]
            .as_str()?
            .contains("not reachable")
            .then_some((status, json))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ready"], false);
    let r = get(&node.url("/anything"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["x-switchyard-error"], "no-snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_control_plane_restarts() {
    let w = world().await;
    let World { cp, node, .. } = w;
    let addr = cp.addr;
    let yaml = config(dead_port(), dead_port(), dead_port(), dead_port());
    let state = cp.stop();
    wait_until_async("node notices the control plane is gone", || async {
        let (_, json) = node.readyz().await;
        (json["control_plane_connected"] == false).then_some(())
    })
    .await;
    // Still serving while disconnected.
    let page = get(&node.url("/page"), None).await;
    assert_eq!(page.status, StatusCode::OK);

    state.clear_received();
    let v2 = snapshot(&state, 2, &yaml, &[("pages/index.html", PAGE)]);
    *state.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(v2);
    let cp = FakeCp::start(addr, state);
    cp.state.wait_ack(2).await;
    let hello = cp.state.hellos().into_iter().next();
    assert_eq!(hello.map(|h| h.last_applied_version), Some(1));
    let json = node.wait_version(2).await;
    assert_eq!(json["source"], "control_plane");
    assert_eq!(json["control_plane_connected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed_and_reported_to_the_control_plane() {
    let w = world().await;
    for _ in 0..3 {
        get(&w.node.url("/api/x"), Some("api.example.com")).await;
    }
    get(&w.node.url("/dead"), None).await;
    get(&w.node.url("/nowhere"), None).await;

    let m = get(&format!("http://{}/metrics", w.node.admin), None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "# TYPE switchyard_requests_total counter",
        "switchyard_requests_total{rule=\"api\",status_class=\"2xx\"} 3",
        "switchyard_requests_total{rule=\"dead\",status_class=\"5xx\"} 1",
        "switchyard_unmatched_requests_total 1",
        "# TYPE switchyard_active_connections gauge",
        "switchyard_snapshot_version 1",
        "switchyard_control_plane_connected 1",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "missing `{line}` in\n{}",
            m.body
        );
    }

    let report = w
        .cp
        .state
        .wait_for("a metrics report with traffic", |m| match m {
            NodeMsg::Metrics(r) if r.rules.iter().any(|s| s.rule == "api" && s.requests == 3) => {
                Some(r.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(report.applied_version, 1);
    let dead = report.rules.iter().find(|s| s.rule == "dead");
    assert_eq!(
        dead.map(|s| (s.errors, s.status_counts.get(&502).copied())),
        Some((1, Some(1)))
    );
    let servers: Vec<_> = report
        .servers
        .iter()
        .filter(|s| s.backend == "pair")
        .collect();
    assert_eq!(servers.iter().map(|s| s.requests).sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_cache_commands_are_answered() {
    let w = world().await;
    w.cp.state
        .command(proto::Command {
            id: "c-1".to_owned(),
            kind: Some(proto::command::Kind::ClearCache(proto::ClearCache {
                source: String::new(),
            })),
        })
        .await;
    let result =
        w.cp.state
            .wait_for("command result", |m| match m {
                NodeMsg::CommandResult(r) if r.id == "c-1" => Some(r.clone()),
                _ => None,
            })
            .await;
    assert!(result.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_their_version_and_on_shutdown() {
    let a = backend("a", Duration::from_millis(600)).await;
    let state = Arc::new(FakeState::default());
    let yaml = format!(
        r#"
backends:
  - name: pool
    servers: [{{ address: "{}" }}]
rules:
  - name: all
    action: {{ forward: {{ backend: pool }} }}
"#,
        a.addr
    );
    let v1 = snapshot(&state, 1, &yaml, &[]);
    *state.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(v1);
    let cp = FakeCp::start(any_port(), state);
    let cache = tempdir();
    let node = start_node(&cp.url(), cache.path()).await;
    cp.state.wait_ack(1).await;

    // A request in flight while version 2 (no rules) is swapped in.
    let url = node.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    wait_until("backend got the request", || (a.hits() == 1).then_some(())).await;
    let v2 = snapshot(&cp.state, 2, "backends: []\nrules: []\n", &[]);
    cp.state.push(v2).await;
    cp.state.wait_ack(2).await;
    let r = get(&node.url("/slow"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = in_flight.await.map(|r| (r.status, r.body));
    assert_eq!(r.ok(), Some((StatusCode::OK, "a /slow".to_owned())));

    // Back to version 1's rules; a request in flight at shutdown finishes.
    let v3 = snapshot(&cp.state, 3, &yaml, &[]);
    cp.state.push(v3).await;
    cp.state.wait_ack(3).await;
    let url = node.url("/last");
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    wait_until("backend got the last request", || {
        (a.hits() == 2).then_some(())
    })
    .await;
    let proxy = node.proxy;
    assert!(node.stop().await.is_ok());
    let r = in_flight.await.map(|r| (r.status, r.body));
    assert_eq!(r.ok(), Some((StatusCode::OK, "a /last".to_owned())));
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(proxy).await.is_err());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_and_consistent_hash_balancing_through_the_proxy() {
    let a = backend("a", Duration::ZERO).await;
    let b = backend("b", Duration::ZERO).await;
    let yaml = format!(
        r#"
backends:
  - name: weighted
    load_balancing: weighted_round_robin
    servers: [{{ address: "{a}", weight: 3 }}, {{ address: "{b}", weight: 1 }}]
  - name: sticky
    load_balancing: consistent_hash
    servers: [{{ address: "{a}" }}, {{ address: "{b}" }}]
rules:
  - name: weighted
    match: {{ path_prefix: /w }}
    action: {{ forward: {{ backend: weighted }} }}
  - name: sticky
    match: {{ path_prefix: /s }}
    action: {{ forward: {{ backend: sticky }} }}
"#,
        a = a.addr,
        b = b.addr
    );
    let (_cp, node, _cache) = single(&yaml).await;
    for _ in 0..40 {
        assert_eq!(get(&node.url("/w"), None).await.status, StatusCode::OK);
    }
    assert_eq!((a.hits(), b.hits()), (30, 10));

    // One client IP: always the same server.
    let first = get(&node.url("/s"), None).await.body;
    for _ in 0..10 {
        assert_eq!(get(&node.url("/s"), None).await.body, first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_ejected_reported_and_skipped() {
    let a = backend("a", Duration::ZERO).await;
    let dead = dead_port();
    let yaml = format!(
        r#"
backends:
  - name: mixed
    servers: [{{ address: "{a}" }}, {{ address: "{dead}" }}]
rules:
  - name: all
    action: {{ forward: {{ backend: mixed }} }}
"#,
        a = a.addr
    );
    let (cp, node, _cache) = single(&yaml).await;
    // Connect failures on the dead server are retried on the live one, so
    // clients never see them; five in a row eject the dead server.
    for _ in 0..20 {
        assert_eq!(get(&node.url("/x"), None).await.status, StatusCode::OK);
    }
    assert_eq!(a.hits(), 20);
    let event = cp
        .state
        .wait_for("backend_health_changed", |m| match m {
            NodeMsg::Event(proto::NodeEvent {
                kind: Some(proto::node_event::Kind::BackendHealthChanged(h)),
                ..
            }) => Some(h.clone()),
            _ => None,
        })
        .await;
    assert_eq!(event.backend, "mixed");
    assert_eq!(event.server, dead.to_string());
    assert!(!event.healthy);
    let m = get(&format!("http://{}/metrics", node.admin), None).await;
    for line in [
        format!("switchyard_upstream_healthy{{backend=\"mixed\",server=\"{dead}\"}} 0"),
        format!("switchyard_upstream_errors_total{{backend=\"mixed\",server=\"{dead}\"}} 5"),
        format!(
            "switchyard_upstream_retries_total{{backend=\"mixed\",server=\"{}\"}} 5",
            a.addr
        ),
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "missing `{line}` in\n{}",
            m.body
        );
    }
}
