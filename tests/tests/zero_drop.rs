//! Issue 4: zero-drop reloads. Bounded loopback load against two data
//! planes while the config changes every 100 ms for 10 s: no request fails,
//! and every response comes from a version that existed when it was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_tests::{
    client, eventually, get_text, Backend, BackendMode, ControlPlane, DataPlane,
};
use tokio::sync::Mutex;

const RUN_FOR: Duration = Duration::from_secs(10);
const EVERY: Duration = Duration::from_millis(100);

fn config(marker: u64, backend: &Backend) -> Value {
    json!({
        "backends": [{ "name": "echo", "servers": [{ "address": backend.addr.to_string() }] }],
        "content_sources": [{ "name": "marker", "inline": format!("{marker}") }],
        "rules": [
            // The rule set itself changes too, so the routing table is rebuilt.
            { "name": format!("extra-{marker}"), "match": { "path_exact": format!("/extra/{marker}") },
              "action": { "replace": { "source": "marker" } } },
            { "name": "marker", "match": { "path_exact": "/v" }, "action": { "replace": { "source": "marker" } } },
            { "name": "echo", "action": { "forward": { "backend": "echo" } } }
        ]
    })
}

/// When each marker's write was started, relative to the test's start.
type Writes = Arc<Mutex<Vec<(u64, Duration)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_every_100ms_drop_and_misroute_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(
        &path,
        serde_json::to_string(&config(0, &backend)).expect("json"),
    )
    .expect("write");
    let cp = ControlPlane::start(dir.path(), &path);
    let dps = [
        DataPlane::start(dir.path(), "a", &cp.grpc_url()),
        DataPlane::start(dir.path(), "b", &cp.grpc_url()),
    ];
    for dp in &dps {
        dp.wait_ready(Duration::from_secs(30)).await;
    }

    let start = Instant::now();
    let writes: Writes = Arc::new(Mutex::new(vec![(0, Duration::ZERO)]));
    let writer = {
        let writes = writes.clone();
        let url = cp.api("/api/config");
        let backend_cfg = (1..).map(move |m| (m, config(m, &backend)));
        tokio::spawn(async move {
            let http = client();
            let mut applied = 0;
            for (marker, cfg) in backend_cfg {
                if start.elapsed() >= RUN_FOR {
                    break;
                }
                writes.lock().await.push((marker, start.elapsed()));
                let r = http
                    .put(&url)
                    .json(&cfg)
                    .send()
                    .await
                    .expect("PUT /api/config");
                assert!(r.status().is_success(), "PUT failed: {}", r.status());
                applied += 1;
                tokio::time::sleep(EVERY).await;
            }
            applied
        })
    };

    // Two sequential clients per data plane: one reads the marker, one
    // goes through the forwarding path.
    let mut clients = Vec::new();
    for dp in &dps {
        for path in ["/v", "/echo"] {
            let url = dp.proxy(path);
            let writes = writes.clone();
            clients.push(tokio::spawn(async move {
                let http = client();
                let (mut ok, mut last_marker) = (0u64, 0u64);
                while start.elapsed() < RUN_FOR {
                    let r = http.get(&url).send().await;
                    let received = start.elapsed();
                    let r = r.unwrap_or_else(|e| panic!("{url}: request failed: {e}"));
                    assert!(r.status().is_success(), "{url}: status {}", r.status());
                    let text = r
                        .text()
                        .await
                        .unwrap_or_else(|e| panic!("{url}: body: {e}"));
                    ok += 1;
                    if path == "/v" {
                        let marker: u64 =
                            text.parse().unwrap_or_else(|_| panic!("bad body {text:?}"));
                        let started = writes
                            .lock()
                            .await
                            .iter()
                            .find(|(m, _)| *m == marker)
                            .map(|(_, t)| *t);
                        let started =
                            started.unwrap_or_else(|| panic!("marker {marker} was never written"));
                        assert!(
                            started <= received,
                            "marker {marker} served before it was written"
                        );
                        assert!(
                            marker >= last_marker,
                            "{url}: went back from {last_marker} to {marker}"
                        );
                        last_marker = marker;
                    }
                }
                (ok, last_marker)
            }));
        }
    }
    let applied = writer.await.expect("writer");
    assert!(
        applied >= 50,
        "only {applied} config changes were made in 10 s"
    );
    let mut total = 0;
    for c in clients {
        let (ok, _) = c.await.expect("client task");
        assert!(ok > 20, "a client made only {ok} requests");
        total += ok;
    }
    println!("{total} requests, {applied} config versions, zero failures");

    // And both nodes end on the last version.
    let last = writes.lock().await.last().map(|(m, _)| *m).expect("writes");
    for dp in &dps {
        eventually("last version served", Duration::from_secs(20), || async {
            let t = get_text(&dp.proxy("/v")).await?;
            (t == last.to_string()).then_some(())
        })
        .await;
    }
}
