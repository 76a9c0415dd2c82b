use super::*;
use switchyard_shared::proto::node_event::Kind;

fn backend(addresses: &[&str]) -> Backend {
    // Through serde, so fields added to the model take their defaults.
    let servers: Vec<_> = addresses
        .iter()
        .map(|a| serde_json::json!({ "address": a }))
        .collect();
    let value = serde_json::json!({ "name": "pool", "servers": servers });
    match serde_json::from_value(value) {
        Ok(b) => b,
        Err(e) => panic!("test backend: {e}"),
    }
}

fn runtime(addresses: &[&str], events: &EventSink) -> BackendRuntime {
    match BackendRuntime::new(&backend(addresses), &Metrics::default(), events, None) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn round_robin_visits_every_server_in_turn() {
    let (events, _rx) = EventSink::channel();
    let b = runtime(&["a:1", "b:2", "c:3"], &events);
    let picks: Vec<_> = (0..6)
        .filter_map(|_| b.pick(b"").map(|s| s.address.as_str()))
        .collect();
    assert_eq!(picks, ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3"]);
}

#[test]
fn no_servers_means_no_pick_and_bad_addresses_are_rejected() {
    let (events, _rx) = EventSink::channel();
    let metrics = Metrics::default();
    let empty = BackendRuntime::new(&backend(&[]), &metrics, &events, None);
    assert!(empty
        .as_ref()
        .map(|b| b.pick(b"").is_none())
        .unwrap_or(false));
    let bad = BackendRuntime::new(&backend(&["not an address"]), &metrics, &events, None);
    assert!(bad.is_err());
}

#[test]
fn failing_servers_are_ejected_with_an_event_and_skipped() {
    let (events, mut rx) = EventSink::channel();
    let b = runtime(&["a:1", "b:2"], &events);
    let a = &b.servers[0];
    for _ in 0..OutlierSettings::default().consecutive_failures {
        b.record(a, Outcome::Failed);
    }
    assert!(!a.healthy());
    assert!((0..10).all(|_| b.pick(b"").map(|s| s.address.as_str()) == Some("b:2")));
    let event = rx.try_recv().ok().and_then(|e| e.kind);
    assert!(
        matches!(&event, Some(Kind::BackendHealthChanged(h)) if h.server == "a:1" && !h.healthy),
        "{event:?}"
    );
    assert_eq!(a.metrics.errors.load(Relaxed), 5);

    // A success after the ejection readmits it, with an event.
    b.record(a, Outcome::Answered);
    assert!(a.healthy());
    let event = rx.try_recv().ok().and_then(|e| e.kind);
    assert!(
        matches!(&event, Some(Kind::BackendHealthChanged(h)) if h.server == "a:1" && h.healthy),
        "{event:?}"
    );
}

#[test]
fn in_flight_guard_counts_requests() {
    let (events, _rx) = EventSink::channel();
    let b = runtime(&["a:1"], &events);
    let s = &b.servers[0];
    let g1 = s.start();
    let g2 = s.start();
    assert_eq!(s.in_flight(), 2);
    drop(g1);
    drop(g2);
    assert_eq!(s.in_flight(), 0);
    assert_eq!(s.metrics.requests.load(Relaxed), 2);
}

fn with(addresses: &[&str], extra: serde_json::Value) -> Backend {
    let servers: Vec<_> = addresses
        .iter()
        .map(|a| serde_json::json!({ "address": a }))
        .collect();
    let mut value = serde_json::json!({ "name": "pool", "servers": servers });
    if let (Some(v), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    match serde_json::from_value(value) {
        Ok(b) => b,
        Err(e) => panic!("test backend: {e}"),
    }
}

#[test]
fn an_open_breaker_takes_a_server_out_and_reports_each_transition() {
    let (events, mut rx) = EventSink::channel();
    let spec = with(
        &["a:1", "b:2"],
        serde_json::json!({
            "circuit_breaker": { "failure_threshold": 2, "open_duration": "1h" },
            "outlier_detection": { "consecutive_failures": 100 }
        }),
    );
    let b = match BackendRuntime::new(&spec, &Metrics::default(), &events, None) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let a = &b.servers[0];
    b.record(a, Outcome::Failed);
    assert!(b.admit(a));
    b.record(a, Outcome::Failed);
    assert_eq!(a.circuit_state(), breaker::CircuitState::Open);
    assert!(!b.admit(a));
    assert!((0..10).all(|_| b.pick(b"").map(|s| s.address.as_str()) == Some("b:2")));
    let event = rx.try_recv().ok().and_then(|e| e.kind);
    assert!(
        matches!(&event, Some(Kind::CircuitStateChanged(c)) if c.server == "a:1" && c.from == "closed" && c.to == "open"),
        "{event:?}"
    );
    // Passive health was not involved: the server is still "healthy".
    assert!(a.healthy());
}

#[test]
fn configured_outlier_detection_and_carried_over_health() {
    let (events, _rx) = EventSink::channel();
    let spec = with(
        &["a:1", "b:2"],
        serde_json::json!({ "outlier_detection": { "consecutive_failures": 2 } }),
    );
    let old = match BackendRuntime::new(&spec, &Metrics::default(), &events, None) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let a = &old.servers[0];
    old.record(a, Outcome::Failed);
    old.record(a, Outcome::Failed);
    assert!(!a.healthy(), "ejected after the configured 2 failures");

    // An active-check verdict survives a changed definition for the
    // servers that stay.
    let check = match serde_json::from_value(serde_json::json!({ "unhealthy_threshold": 1 })) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    old.servers[1].health.record(false, &check);
    let changed = with(&["b:2", "c:3"], serde_json::json!({}));
    let new = match BackendRuntime::new(&changed, &Metrics::default(), &events, Some(&old)) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(!new.servers[0].health.healthy(), "b kept its verdict");
    assert!(new.servers[1].health.healthy(), "c starts healthy");
}
