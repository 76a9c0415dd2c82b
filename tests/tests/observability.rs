//! Issue 7, end to end: data-plane metrics reported to the control plane,
//! the REST and Prometheus views of both planes (checked with `promtool`),
//! the metrics history, the WebSocket event stream, and OTLP export of
//! spans and metrics to a real OTLP/gRPC receiver run by the test.

#[path = "observability/otlp_receiver.rs"]
mod otlp_receiver;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use switchyard_tests::process::{bin_path, Proc};
use switchyard_tests::{client, eventually, Backend, BackendMode, ControlPlane, DataPlane};
use tokio_tungstenite::tungstenite::Message;

fn write_config(dir: &Path, backend: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"
backends:
  - name: pool
    servers: [{{ address: "{backend}" }}]
content_sources:
  - name: hello
    inline: "hello\n"
rules:
  - name: hello
    match: {{ path_exact: /hello }}
    action: {{ replace: {{ source: hello }} }}
  - name: api
    match: {{ path_prefix: /v1/ }}
    action: {{ forward: {{ backend: pool }} }}
"#
    );
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

async fn wait_ready(dp: &DataPlane) {
    dp.wait_ready(Duration::from_secs(30)).await;
}

/// `promtool check metrics` on a scraped page; a missing promtool fails
/// the test (the test command installs Debian's `prometheus` package).
fn promtool_check(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required (Debian package `prometheus`) but cannot run: {e}")
        });
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool rejects {what}:\n{}{}\n--- page ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(cp: &ControlPlane, query: &str) -> Ws {
    let url = cp
        .api(&format!("/ws/events{query}"))
        .replacen("http", "ws", 1);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// The next JSON message (pings are answered by the client library).
async fn ws_next(ws: &mut Ws, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a websocket message in time")
            .expect("stream open")
            .expect("websocket message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("event is JSON");
        }
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_flow_to_rest_prometheus_history_and_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("a", BackendMode::Echo).await;
    let config = write_config(dir.path(), &backend.addr.to_string());
    let cp = ControlPlane::start(dir.path(), &config);
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    wait_ready(&dp).await;
    let http = client();

    let mut updates = ws_connect(&cp, "?types=metrics_update").await;
    for _ in 0..6 {
        let r = http.get(dp.proxy("/v1/items")).send().await.expect("proxy");
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = http.get(dp.proxy("/hello")).send().await.expect("proxy");
        assert_eq!(r.status(), 200);
    }

    // metrics_update events carry the fleet summary; wait for our traffic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let update = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = ws_next(&mut updates, left).await;
        assert_eq!(event["type"], "metrics_update", "filtered stream: {event}");
        assert!(event["seq"].as_u64().is_some() && event["timestamp"].is_string());
        if event["data"]["request_count"].as_u64() == Some(9) {
            break event;
        }
    };
    let data = &update["data"];
    assert_eq!(data["rule_metrics"]["api"]["request_count"], 6);
    assert!(data.get("nodes").is_none(), "events leave out node detail");

    // GET /api/metrics: the plan's shape, real figures only.
    let m: Value = http
        .get(cp.api("/api/metrics"))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    assert_eq!(m["request_count"], 9);
    assert_eq!(m["error_count"], 0);
    assert!(
        m["avg_response_time"].as_f64().is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(m["latency_ms"]["p95"].as_f64().is_some(), "{m}");
    // Null until a content cache was consulted, then a ratio.
    let ratio = &m["cache_hit_ratio"];
    assert!(
        ratio.is_null() || ratio.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{m}"
    );
    assert!(m["uptime"].as_u64().is_some());
    assert!(m["active_connections"].as_u64().is_some());
    let api = &m["rule_metrics"]["api"];
    assert_eq!(api["request_count"], 6);
    assert_eq!(api["status_codes"]["200"], 6);
    assert_eq!(api["backend"], "pool");
    assert_eq!(api["backend_health"][backend.addr.to_string()], "healthy");
    assert_eq!(m["rule_metrics"]["hello"]["request_count"], 3);
    assert_eq!(m["nodes"][0]["node_id"], "node-1");
    assert_eq!(m["nodes"][0]["connected"], true);
    assert!(m["nodes"][0]["rss_bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(
        m["backends"]["pool"][backend.addr.to_string()]["request_count"],
        6
    );

    // Prometheus on both planes, valid for promtool.
    let cp_text = http
        .get(cp.api("/metrics"))
        .send()
        .await
        .expect("cp /metrics")
        .text()
        .await
        .expect("text");
    promtool_check("the control plane's /metrics", &cp_text);
    assert_eq!(
        sample(
            &cp_text,
            "switchyard_requests_total{node=\"node-1\",rule=\"api\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &cp_text,
            "switchyard_request_duration_seconds_count{rule=\"api\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(&cp_text, "switchyard_node_connected{node=\"node-1\"}"),
        Some(1.0)
    );
    let dp_text = http
        .get(dp.admin("/metrics"))
        .send()
        .await
        .expect("dp /metrics")
        .text()
        .await
        .expect("text");
    promtool_check("the data plane's /metrics", &dp_text);
    assert_eq!(
        sample(
            &dp_text,
            "switchyard_request_duration_seconds_count{rule=\"api\"}"
        ),
        Some(6.0)
    );
    assert!(sample(&dp_text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&dp_text, "process_cpu_seconds_total").is_some());

    // History: the fleet series and one rule's, at the report interval.
    let h: Value = http
        .get(cp.api("/api/metrics/history?window=10m"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let total: u64 = h["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["request_count"].as_u64())
        .sum();
    assert_eq!(total, 9, "{h}");
    assert_eq!(h["resolution_seconds"], 5);
    let h: Value = http
        .get(cp.api("/api/metrics/history?window=10m&rule=api"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let total: u64 = h["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["request_count"].as_u64())
        .sum();
    assert_eq!(total, 6, "{h}");
    let r = http
        .get(cp.api("/api/metrics/history?rule=nope"))
        .send()
        .await
        .expect("history");
    assert_eq!(r.status(), 404);
    let r = http
        .get(cp.api("/api/metrics/history?window=soon"))
        .send()
        .await
        .expect("history");
    assert_eq!(r.status(), 400);

    // Resume: everything since seq 0 is still retained, in order.
    let mut replay = ws_connect(&cp, "?since=0").await;
    let first = ws_next(&mut replay, Duration::from_secs(5)).await;
    assert_eq!(first["seq"], 1, "{first}");
    let second = ws_next(&mut replay, Duration::from_secs(5)).await;
    assert_eq!(second["seq"], 2, "{second}");
    // A sequence number this run never reached: start over explicitly.
    let mut future = ws_connect(&cp, "?since=1000000").await;
    let resync = ws_next(&mut future, Duration::from_secs(5)).await;
    assert_eq!(resync["type"], "resync_required", "{resync}");
    assert!(resync["data"]["last_seq"].as_u64().is_some());

    // A disconnected node keeps its totals; its live gauges stop counting.
    drop(dp);
    eventually(
        "node marked disconnected",
        Duration::from_secs(15),
        || async {
            let m: Value = http
                .get(cp.api("/api/metrics"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (m["nodes"][0]["connected"] == false).then_some(m)
        },
    )
    .await;
    let m: Value = http
        .get(cp.api("/api/metrics"))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    assert_eq!(m["request_count"], 9);
    assert_eq!(m["active_connections"], 0);
    assert_eq!(m["nodes"][0]["active_connections"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_spans_continue_the_client_trace_and_reach_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = otlp_receiver::Receiver::start().await;
    let backend = otlp_receiver::TraceBackend::start().await;
    let config = write_config(dir.path(), &backend.addr.to_string());
    let endpoint = format!("http://{}", receiver.addr);
    let otel_env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ];
    let data_dir = dir.path().join("cp-data");
    let cp_proc = Proc::start_with_env(
        &bin_path("e2e-control-plane"),
        &ControlPlane::args(&config, &data_dir, "127.0.0.1:0", "127.0.0.1:0"),
        &otel_env,
        &["api", "grpc"],
        dir.path(),
        "control-plane",
    );
    let dp = DataPlane::start_with(dir.path(), "node-otel", &cp_proc.url("grpc"), &otel_env);
    wait_ready(&dp).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let r = client()
        .get(dp.proxy("/v1/traced?x=1"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .header("tracestate", "vendor=opaque")
        .header("user-agent", "otel-e2e")
        .send()
        .await
        .expect("proxy");
    assert_eq!(r.status(), 200);

    let span = eventually(
        "the data plane's server span",
        Duration::from_secs(20),
        || async {
            receiver
                .spans()
                .into_iter()
                .find(|s| hex(&s.span.trace_id) == trace_id && s.span.kind == 2)
        },
    )
    .await;
    assert_eq!(span.service_name, "switchyard-data-plane");
    assert_eq!(
        hex(&span.span.parent_span_id),
        parent_id,
        "parent is the client's span"
    );
    assert_eq!(span.span.name, "GET api");
    let attr = |k: &str| span.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr("http.request.method"), "GET");
    assert_eq!(attr("url.path"), "/v1/traced");
    assert_eq!(attr("url.query"), "x=1");
    assert_eq!(attr("url.scheme"), "http");
    assert_eq!(attr("http.route"), "api");
    assert_eq!(attr("http.response.status_code"), "200");
    assert_eq!(attr("user_agent.original"), "otel-e2e");
    assert_eq!(attr("client.address"), "127.0.0.1");
    assert!(!attr("server.address").is_empty());

    // The backend continues the same trace, as a child of the proxy span.
    let seen = backend.traceparents();
    let tp = seen.last().expect("backend saw a traceparent");
    let parts: Vec<&str> = tp.0.split('-').collect();
    assert_eq!(parts.get(1).copied(), Some(trace_id));
    assert_eq!(
        parts.get(2).copied(),
        Some(hex(&span.span.span_id).as_str())
    );
    assert_eq!(tp.1.as_deref(), Some("vendor=opaque"));

    // Metrics go out over OTLP too.
    eventually(
        "switchyard.requests over OTLP",
        Duration::from_secs(20),
        || async {
            receiver
                .metric_names()
                .contains(&"switchyard.requests".to_owned())
                .then_some(())
        },
    )
    .await;
    // The control plane traces config changes and rollouts.
    eventually("control-plane spans", Duration::from_secs(20), || async {
        let names: Vec<String> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.service_name == "switchyard-control-plane")
            .map(|s| s.span.name)
            .collect();
        (names.iter().any(|n| n == "config.change") && names.iter().any(|n| n == "rollout.send"))
            .then_some(())
    })
    .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
