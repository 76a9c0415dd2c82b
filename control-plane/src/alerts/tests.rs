//! Alert evaluation: thresholds, windows, hysteresis and the events.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::metrics::aggregate::{NodeFigures, ServerView};
use crate::metrics::totals::{Hist, RuleTotals, Totals};

const STEP: u64 = 5_000;

/// Bounds in µs: 1 ms, 10 ms, 100 ms, 1 s, 2 s, 5 s.
fn bounds() -> Vec<u64> {
    vec![1_000, 10_000, 100_000, 1_000_000, 2_000_000, 5_000_000]
}

/// A cumulative histogram: `fast` answers in (1, 10] ms, `slow` in (1, 2] s.
fn hist(fast: u64, slow: u64) -> Hist {
    let mut counts = vec![0; 7];
    counts[1] = fast;
    counts[4] = slow;
    Hist {
        bounds_us: bounds(),
        counts,
        sum_us: fast * 5_000 + slow * 1_500_000,
        count: fast + slow,
        max_us: if slow > 0 { 2_000_000 } else { 10_000 },
    }
}

/// The fleet at tick `i` with one rule `api` and cumulative figures.
fn fleet(i: u64, requests: u64, errors: u64, latency: Hist) -> FleetSnapshot {
    let mut totals = Totals::default();
    totals.rules.insert(
        "api".to_owned(),
        RuleTotals {
            requests,
            errors,
            latency,
            ..RuleTotals::default()
        },
    );
    FleetSnapshot {
        at_ms: 1_000_000 + i * STEP,
        totals,
        ..FleetSnapshot::default()
    }
}

fn engine(window_secs: u64) -> Engine {
    Engine::new(AlertSettings {
        window: Duration::from_secs(window_secs),
        ..AlertSettings::default()
    })
}

fn names(t: &[Transition]) -> Vec<(&'static str, String)> {
    t.iter()
        .map(|t| match t {
            Transition::Fired(a) => ("alert", a.subject.clone()),
            Transition::Resolved { alert, .. } => ("alert_resolved", alert.subject.clone()),
        })
        .collect()
}

/// Feeds ticks where each adds `per_tick` answers with `err_per_tick`
/// errors; returns the transitions of every tick.
struct Feed {
    engine: Engine,
    tick: u64,
    requests: u64,
    errors: u64,
}

impl Feed {
    fn new(window_secs: u64) -> Self {
        Self {
            engine: engine(window_secs),
            tick: 0,
            requests: 0,
            errors: 0,
        }
    }

    fn step(&mut self, per_tick: u64, err_per_tick: u64) -> Vec<Transition> {
        self.tick += 1;
        self.requests += per_tick;
        self.errors += err_per_tick;
        let h = hist(self.requests, 0);
        self.engine
            .evaluate(&fleet(self.tick, self.requests, self.errors, h))
    }
}

#[test]
fn error_rate_fires_once_and_resolves_with_hysteresis() {
    let mut f = Feed::new(60);
    // Healthy traffic: nothing fires.
    for _ in 0..3 {
        assert!(f.step(100, 1).is_empty());
    }
    // 50 % errors: fires on the first tick that sees them...
    let t = f.step(100, 50);
    assert_eq!(names(&t), vec![("alert", "api".to_owned())]);
    let Transition::Fired(a) = &t[0] else {
        panic!("{t:?}")
    };
    assert_eq!((a.alert, a.subject_kind), ("error_rate", "rule"));
    assert!(
        a.value > 0.05 && a.value < 0.5,
        "window average: {}",
        a.value
    );
    assert_eq!(a.threshold, 0.05);
    // ...and never again while it keeps firing.
    for _ in 0..5 {
        assert!(f.step(100, 50).is_empty());
    }
    assert_eq!(f.engine.active().len(), 1);
    // Clean traffic: the 12-tick window still holds the errors for a while.
    let mut resolved_at = None;
    for i in 0..20 {
        let t = f.step(100, 0);
        if !t.is_empty() {
            assert_eq!(names(&t), vec![("alert_resolved", "api".to_owned())]);
            let Transition::Resolved { value, .. } = &t[0] else {
                panic!("{t:?}")
            };
            // Resolved only below threshold x (1 - hysteresis).
            assert!(value.is_some_and(|v| v <= 0.045), "{value:?}");
            resolved_at = Some(i);
            break;
        }
    }
    let at = resolved_at.expect("resolves once the errors leave the window");
    assert!(
        at >= 6,
        "the window keeps errors for its whole length: {at}"
    );
    assert!(f.engine.active().is_empty());
}

#[test]
fn inside_the_hysteresis_band_an_alert_keeps_firing() {
    let mut f = Feed::new(5);
    // A window of one tick: the value is the tick's own rate.
    f.step(1000, 0);
    assert_eq!(names(&f.step(1000, 60)).len(), 1, "6 % fires");
    // 4.8 %: below the threshold but above 4.5 %: still firing, silent.
    assert!(f.step(1000, 48).is_empty());
    assert_eq!(f.engine.active().len(), 1);
    assert!((f.engine.active()[0].value - 0.048).abs() < 1e-9);
    // 5.1 %: breaching again is not a new alert.
    assert!(f.step(1000, 51).is_empty());
    // 4.5 %: resolved.
    assert_eq!(names(&f.step(1000, 45)).len(), 1);
    // Exactly at the threshold does not fire (strictly above).
    assert!(f.step(1000, 50).is_empty());
    assert!(f.engine.active().is_empty());
}

#[test]
fn too_few_requests_are_not_judged_and_resolve_a_firing_alert() {
    let mut f = Feed::new(5);
    f.step(5, 0);
    // 100 % errors on 5 requests: below min_requests (10).
    assert!(f.step(5, 5).is_empty());
    assert!(names(&f.step(20, 20)).len() == 1);
    // Traffic stops: no data, the alert resolves as such.
    let t = f.step(0, 0);
    let Some(Transition::Resolved { value, .. }) = t.first() else {
        panic!("{t:?}")
    };
    assert_eq!(*value, None);
    let (kind, data) = t[0].event();
    assert_eq!(kind, "alert_resolved");
    assert_eq!(data["reason"], "no_data");
    assert_eq!(data["alert"], "error_rate");
}

#[test]
fn p95_is_read_from_the_window_histogram() {
    let mut e = engine(10);
    // Slow answers long ago, then only fast ones.
    let mut fast = 0;
    let slow = 100;
    assert!(e.evaluate(&fleet(0, 0, 0, hist(0, 0))).is_empty());
    let t = e.evaluate(&fleet(1, slow, 0, hist(0, slow)));
    assert_eq!(names(&t), vec![("alert", "api".to_owned())]);
    let Transition::Fired(a) = &t[0] else {
        panic!()
    };
    assert_eq!(a.alert, "latency_p95");
    assert!(a.value > 1000.0 && a.value <= 2000.0, "{}", a.value);
    assert!(a.message.contains("p95"), "{}", a.message);
    // Fast traffic dilutes, then the slow tick leaves the 10 s window.
    let mut resolved = None;
    for i in 2..10 {
        fast += 100;
        let t = e.evaluate(&fleet(i, slow + fast, 0, hist(fast, slow)));
        if !t.is_empty() {
            resolved = Some(i);
            let (kind, data) = t[0].event();
            assert_eq!(kind, "alert_resolved");
            assert_eq!(data["reason"], "recovered");
            assert!(data["value"].as_f64().is_some_and(|v| v <= 900.0));
            break;
        }
    }
    assert!(resolved.is_some(), "p95 alert resolves");
}

#[test]
fn window_readings_stay_bounded() {
    let mut e = Engine::new(AlertSettings {
        window: Duration::from_secs(3600),
        ..AlertSettings::default()
    });
    for i in 0..2_000 {
        e.evaluate(&fleet(i, i * 10, 0, hist(i * 10, 0)));
    }
    assert!(e.readings.len() <= MAX_READINGS + 1, "{}", e.readings.len());
    let mut e = engine(60);
    for i in 0..200 {
        e.evaluate(&fleet(i, i * 10, 0, hist(i * 10, 0)));
    }
    // 60 s at 5 s: the base plus 12.
    assert!(e.readings.len() <= 13, "{}", e.readings.len());
}

fn node(id: &str, connected: bool, rss: u64, limit: u64) -> NodeFigures {
    NodeFigures {
        node_id: id.to_owned(),
        connected,
        reported_at_ms: 0,
        uptime_ms: 0,
        applied_version: 1,
        active_connections: 0,
        rss_bytes: rss,
        memory_limit_bytes: limit,
        totals: Totals::default(),
        servers: BTreeMap::new(),
    }
}

fn server(healthy: u64, reporting: u64) -> ServerView {
    ServerView {
        healthy_nodes: healthy,
        reporting_nodes: reporting,
        circuit_states: BTreeMap::new(),
    }
}

#[test]
fn availability_is_per_backend_and_memory_per_connected_node() {
    let mut e = engine(60);
    let mut f = FleetSnapshot {
        at_ms: 1_000,
        ..FleetSnapshot::default()
    };
    // pool: 2 servers seen by 2 nodes, one server down on both: 50 %.
    f.servers
        .insert(("pool".into(), "a:1".into()), server(2, 2));
    f.servers
        .insert(("pool".into(), "b:1".into()), server(0, 2));
    // web: 10 servers, 9 healthy on the one node: 90 % is not below 90 %.
    for i in 0..10 {
        f.servers.insert(
            ("web".into(), format!("s{i}")),
            server(u64::from(i != 0), 1),
        );
    }
    f.nodes = vec![
        node("n1", true, 900, 1_000),
        node("n2", true, 100, 1_000),
        node("n3", false, 999, 1_000),
        node("n4", true, 999, 0),
    ];
    let t = e.evaluate(&f);
    let fired: Vec<(&str, String)> = t
        .iter()
        .map(|t| match t {
            Transition::Fired(a) => (a.alert, a.subject.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            ("backend_availability", "pool".to_owned()),
            ("memory", "n1".to_owned()),
        ],
        "n3 is disconnected, n4 reports no limit, web is at 90 %"
    );
    // One pool server back up on one node: 75 %, still firing, silent.
    f.at_ms += STEP;
    f.servers
        .insert(("pool".into(), "b:1".into()), server(1, 2));
    assert!(e.evaluate(&f).is_empty());
    // n1 disconnects: its memory alert resolves for lack of data.
    f.at_ms += STEP;
    f.nodes[0].connected = false;
    f.servers
        .insert(("pool".into(), "b:1".into()), server(2, 2));
    let t = e.evaluate(&f);
    let resolved: Vec<(&str, Option<f64>)> = t
        .iter()
        .map(|t| match t {
            Transition::Resolved { alert, value, .. } => (alert.alert, *value),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        resolved,
        vec![("backend_availability", Some(1.0)), ("memory", None)]
    );
    assert!(e.active().is_empty());
}

#[test]
fn settings_move_the_thresholds() {
    let mut e = Engine::new(AlertSettings {
        window: Duration::from_secs(5),
        error_rate: 0.5,
        min_requests: 1,
        ..AlertSettings::default()
    });
    e.evaluate(&fleet(0, 0, 0, hist(0, 0)));
    assert!(
        e.evaluate(&fleet(1, 10, 4, hist(10, 0))).is_empty(),
        "40 % < 50 %"
    );
    let t = e.evaluate(&fleet(2, 20, 10, hist(20, 0)));
    assert_eq!(names(&t).len(), 1, "60 % > 50 %");
    let (kind, data) = t[0].event();
    assert_eq!(kind, "alert");
    assert_eq!(data["threshold"], 0.5);
    assert_eq!(data["subject"], "api");
    assert!(data["since"].is_string() && data["window_seconds"].as_f64() == Some(5.0));
}
