//! Following the control plane: nacks, blobs, the cached snapshot,
//! reconnects, reports and commands.

use http::StatusCode;
use switchyard_shared::proto;
use switchyard_shared::proto::node_message::Msg as NodeMsg;

use crate::fake_cp::{snapshot, FakeCp};
use crate::support::*;
use crate::*;

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

/// Still version 1, still the old page; nothing tampered is cached.
async fn still_version_1(w: &World, sha: &str) {
    let (status, json) = w.node.readyz().await;
    assert_eq!(
        (status, json["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let page = get(&w.node.url("/page"), None).await;
    assert_eq!(page.body.as_bytes(), PAGE);
    assert!(!w.cache.path().join("blobs").join(sha).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_fails_its_hash_is_nacked() {
    let w = world().await;
    let new_page: &[u8] = b"<h1>version two</h1>\n";
    let v2 = snapshot(&w.cp.state, 2, &w.yaml(), &[("pages/index.html", new_page)]);
    let sha = sha256_hex(new_page);
    let tamper = |bytes: &[u8]| {
        w.cp.state
            .blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha.clone(), bytes.to_vec());
    };
    // Different bytes of the announced size under the announced digest:
    // only the sha256 check can catch them.
    let same_size: &[u8] = b"<h1>tampered!!!</h1>\n";
    assert_eq!(same_size.len(), new_page.len());
    tamper(same_size);
    w.cp.state.push(v2.clone()).await;
    let error = w.cp.state.wait_nack(2).await;
    assert!(error.contains("content source `page`"), "{error}");
    assert!(error.contains(&sha), "{error}");
    assert!(
        error.contains(&format!("hashing to {}", sha256_hex(same_size))),
        "the digest check failed, not the size bound: {error}"
    );
    still_version_1(&w, &sha).await;

    // More bytes than announced: refused while streaming, before hashing.
    w.cp.state.clear_received();
    tamper(b"<h1>tampered blob, and longer!</h1>\n");
    w.cp.state.push(v2).await;
    let error = w.cp.state.wait_nack(2).await;
    assert!(
        error.contains(&format!("blob {sha} is larger than its announced 21 bytes")),
        "{error}"
    );
    still_version_1(&w, &sha).await;

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
async fn without_listen_addresses_the_config_listeners_are_bound() {
    let port = dead_port();
    let yaml = format!(
        r#"
listeners:
  - name: main
    address: "{port}"
content_sources:
  - name: hi
    inline: "hi\n"
rules:
  - name: hi
    action: {{ replace: {{ source: hi }} }}
"#
    );
    let state = std::sync::Arc::new(crate::fake_cp::FakeState::default());
    let v1 = snapshot(&state, 1, &yaml, &[]);
    *state.desired.lock().unwrap_or_else(|e| e.into_inner()) = Some(v1);
    let cp = FakeCp::start(any_port(), state);
    let cache = tempdir();
    let node = start_node_with(&cp.url(), cache.path(), false).await;
    cp.state.wait_ack(1).await;
    let url = format!("http://{port}/");
    let body = wait_until_async("the config listener answers", || async {
        let stream = tokio::net::TcpStream::connect(port).await.ok()?;
        drop(stream);
        Some(get(&url, None).await.body)
    })
    .await;
    assert_eq!(body, "hi\n");
    assert!(node.stop().await.is_ok());
}
