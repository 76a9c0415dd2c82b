//! Load balancing, passive health and retries, and in-flight requests
//! across snapshot swaps and shutdown.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use switchyard_shared::proto;
use switchyard_shared::proto::node_message::Msg as NodeMsg;

use crate::fake_cp::{snapshot, FakeCp, FakeState};
use crate::support::*;
use crate::*;

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
