//! Issue 7 item 8, end to end: a backend answering 500 makes the control
//! plane fire an `error_rate` alert on `/ws/events`, `/api/health` says
//! `degraded` (still 200) and lists it, `/metrics` exposes it; once the
//! backend is fixed the alert resolves with one `alert_resolved` event.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use switchyard_tests::process::{bin_path, Proc};
use switchyard_tests::{client, Backend, BackendMode, ControlPlane, DataPlane};
use tokio_tungstenite::tungstenite::Message;

fn write_config(dir: &Path, backend: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"
backends:
  - name: pool
    servers: [{{ address: "{backend}" }}]
rules:
  - name: api
    match: {{ path_prefix: /v1/ }}
    action: {{ forward: {{ backend: pool }} }}
"#
    );
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A control plane ticking every 200 ms with a 2 s alert window.
fn start_control_plane(dir: &Path, config: &Path) -> ControlPlane {
    let data_dir = dir.join("cp-data");
    let mut args = ControlPlane::args(config, &data_dir, "127.0.0.1:0", "127.0.0.1:0");
    args.extend(
        [
            "--metrics-interval",
            "200ms",
            "--alert-window",
            "2s",
            "--alert-min-requests",
            "5",
        ]
        .map(String::from),
    );
    let proc = Proc::start(
        &bin_path("e2e-control-plane"),
        &args,
        &["api", "grpc"],
        dir,
        "control-plane",
    );
    ControlPlane {
        proc,
        config_path: config.to_owned(),
        data_dir,
    }
}

/// A data plane reporting every 100 ms.
fn start_data_plane(dir: &Path, node_id: &str, grpc: &str) -> DataPlane {
    let args = [
        "--control-plane",
        grpc,
        "--node-id",
        node_id,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--metrics-interval",
        "100ms",
        "--cache-dir",
    ]
    .map(String::from)
    .into_iter()
    .chain([dir.join(format!("dp-{node_id}")).display().to_string()])
    .collect::<Vec<_>>();
    let proc = Proc::start(
        &bin_path("e2e-data-plane"),
        &args,
        &["proxy", "admin"],
        dir,
        node_id,
    );
    DataPlane {
        proc,
        node_id: node_id.to_owned(),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Waits for the next `alert`/`alert_resolved` event about the `api`
/// rule's error rate while sending traffic through the proxy, so the
/// window keeps moving. Other alerts (the 500s also make the data plane
/// count the server as failing: `backend_availability`) are skipped.
async fn next_alert_event(ws: &mut Ws, dp: &DataPlane, within: Duration) -> Value {
    let http = client();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        for _ in 0..5 {
            let _ = http.get(dp.proxy("/v1/items")).send().await;
        }
        let wait = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            msg = ws.next() => {
                let msg = msg.expect("stream open").expect("websocket message");
                if let Message::Text(t) = msg {
                    let event: Value = serde_json::from_str(t.as_str()).expect("event is JSON");
                    if event["data"]["alert"] == "error_rate" && event["data"]["subject"] == "api" {
                        return event;
                    }
                }
            }
            _ = wait => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert event within {within:?}"
        );
    }
}

async fn health(cp: &ControlPlane) -> (u16, Value) {
    let r = client()
        .get(cp.api("/api/health"))
        .send()
        .await
        .expect("health");
    let code = r.status().as_u16();
    (code, r.json().await.expect("health JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backend_fires_and_resolves_an_error_rate_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("a", BackendMode::Status(500)).await;
    let config = write_config(dir.path(), &backend.addr.to_string());
    let cp = start_control_plane(dir.path(), &config);
    let dp = start_data_plane(dir.path(), "node-1", &cp.grpc_url());
    dp.wait_ready(Duration::from_secs(30)).await;
    let http = client();
    let (code, h) = health(&cp).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")), "{h}");

    let url = cp
        .api("/ws/events?types=alert,alert_resolved")
        .replacen("http", "ws", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");

    // 500s: the rule's error rate alert fires.
    let fired = next_alert_event(&mut ws, &dp, Duration::from_secs(30)).await;
    assert_eq!(fired["type"], "alert", "{fired}");
    let data = &fired["data"];
    assert_eq!(data["alert"], "error_rate", "{fired}");
    assert_eq!(data["subject_kind"], "rule");
    assert_eq!(data["subject"], "api");
    assert_eq!(data["threshold"], 0.05);
    assert!(data["value"].as_f64().is_some_and(|v| v > 0.05), "{fired}");
    assert!(fired["seq"].as_u64().is_some() && fired["timestamp"].is_string());

    // Health degrades (not unavailable: still 200) and lists the alert;
    // status and Prometheus show it too.
    let (code, h) = health(&cp).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("degraded")), "{h}");
    let alerts = h["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        alerts
            .iter()
            .any(|a| a["alert"] == "error_rate" && a["subject"] == "api"),
        "{h}"
    );
    let status: Value = http
        .get(cp.api("/api/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert!(
        status["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["alert"] == "error_rate")),
        "{status}"
    );
    let page = http
        .get(cp.api("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        page.contains(r#"switchyard_alerts_firing{alert="error_rate",subject="api"} 1"#),
        "{page}"
    );

    // Fixed: the 500s leave the window and the alert resolves, once.
    backend.set_mode(BackendMode::Echo);
    let resolved = next_alert_event(&mut ws, &dp, Duration::from_secs(30)).await;
    assert_eq!(
        resolved["type"], "alert_resolved",
        "no repeat alert: {resolved}"
    );
    assert_eq!(resolved["data"]["alert"], "error_rate");
    assert_eq!(resolved["data"]["subject"], "api");
    assert_eq!(resolved["data"]["reason"], "recovered", "{resolved}");
    assert!(resolved["seq"].as_u64() > fired["seq"].as_u64());
    let (code, h) = health(&cp).await;
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert_eq!(h["alerts"].as_array().map(Vec::len), Some(0), "{h}");
}
