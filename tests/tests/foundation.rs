//! Issue 2, end to end: a real control plane and two data-plane processes
//! on loopback, real backends, real traffic.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::process::run_to_exit;
use switchyard_tests::{client, Backend, BackendMode, ControlPlane, DataPlane};

fn write_config(dir: &Path, a: &Backend, b: &Backend, dead_port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("content")).expect("content dir");
    std::fs::write(dir.join("content/page.html"), "<h1>from a file</h1>\n").expect("page");
    let yaml = format!(
        r#"
backends:
  - name: pair
    servers: [{{ address: "{a}" }}, {{ address: "{b}" }}]
  - name: dead
    servers: [{{ address: "127.0.0.1:{dead_port}" }}]
    timeouts: {{ connect: 500ms }}
content_sources:
  - name: hello
    inline: "hello from switchyard\n"
  - name: page
    file: content/page.html
rules:
  - name: hello
    match: {{ path_exact: /hello }}
    action: {{ replace: {{ source: hello, status: 201, headers: {{ x-mock: "yes" }} }} }}
  - name: page
    match: {{ path_exact: /page }}
    action: {{ replace: {{ source: page }} }}
  - name: dead
    match: {{ path_prefix: /dead }}
    action: {{ forward: {{ backend: dead }} }}
  - name: api
    match: {{ hosts: [api.test], path_prefix: /v1/ }}
    action: {{ forward: {{ backend: pair, strip_prefix: /v1 }} }}
"#,
        a = a.addr,
        b = b.addr,
    );
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn wait_ready(dp: &DataPlane) {
    dp.wait_ready(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_data_planes_forward_replace_and_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Backend::start("a", BackendMode::Echo).await;
    let b = Backend::start("b", BackendMode::Echo).await;
    let config = write_config(dir.path(), &a, &b, free_port());
    let cp = ControlPlane::start(dir.path(), &config);
    let dp1 = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    let dp2 = DataPlane::start(dir.path(), "node-2", &cp.grpc_url());
    wait_ready(&dp1).await;
    wait_ready(&dp2).await;
    let http = client();

    // Forwarding with prefix strip and forwarding headers, round robin.
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let r = http
            .get(dp1.proxy("/v1/users?x=1"))
            .header("host", "api.test")
            .send()
            .await
            .expect("proxy answers");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["path"], "/users");
        assert_eq!(body["query"], "x=1");
        assert_eq!(body["x_forwarded_for"], "127.0.0.1");
        assert_eq!(body["x_forwarded_proto"], "http");
        assert_eq!(body["x_forwarded_host"], "api.test");
        *seen
            .entry(body["backend"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&10), "round robin spread: {seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "round robin spread: {seen:?}");

    // Replacement: status, headers, content type, body; on both nodes.
    for dp in [&dp1, &dp2] {
        let r = http.get(dp.proxy("/hello")).send().await.expect("hello");
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-mock"], "yes");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.text().await.expect("body"), "hello from switchyard\n");

        let r = http.get(dp.proxy("/page")).send().await.expect("page");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.text().await.expect("body"), "<h1>from a file</h1>\n");
    }

    // No match: 404 with a short clear body. The host rule needs api.test.
    let r = http.get(dp2.proxy("/v1/users")).send().await.expect("404");
    assert_eq!(r.status(), 404);
    let text = r.text().await.expect("body");
    assert!(
        text.len() < 200 && text.to_lowercase().contains("no route"),
        "{text}"
    );

    // Dead backend: 502.
    let r = http.get(dp1.proxy("/dead")).send().await.expect("502");
    assert_eq!(r.status(), 502);

    // Both nodes acked the same, current version, seen through the API.
    let r = http
        .get(cp.api("/api/config"))
        .send()
        .await
        .expect("config");
    let etag = r.headers()["etag"].to_str().expect("etag").to_owned();
    let version: u64 = etag.trim_matches('"').parse().expect("numeric etag");
    let nodes: Value = http
        .get(cp.api("/api/nodes"))
        .send()
        .await
        .expect("nodes")
        .json()
        .await
        .expect("json");
    assert_eq!(nodes["desired_version"], version);
    let list = nodes["nodes"].as_array().expect("nodes array");
    assert_eq!(list.len(), 2, "{nodes}");
    for n in list {
        assert_eq!(n["connected"], true, "{n}");
        assert_eq!(n["acked_version"], version, "{n}");
        assert!(n["last_nack"].is_null(), "{n}");
    }
    let mut ids: Vec<&str> = list.iter().filter_map(|n| n["node_id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["node-1", "node-2"]);
}

#[tokio::test]
async fn bad_config_stops_the_control_plane_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        r#"
backends:
  - name: api
    servers: [{ address: "not-an-address" }]
content_sources:
  - { name: s, inline: x }
rules:
  - name: one
    match: { path_regex: "(unclosed" }
    action: { forward: { backend: nowhere } }
  - name: one
    action: { replace: { source: ghost } }
"#,
    )
    .expect("write");
    let data_dir = dir.path().join("sled");
    let args = ControlPlane::args(&config, &data_dir, "127.0.0.1:0", "127.0.0.1:0");
    let (status, stderr) = run_to_exit(
        &switchyard_tests::process::bin_path("e2e-control-plane"),
        &args,
    );
    assert!(!status.success(), "must exit non-zero");
    assert_eq!(
        status.code(),
        Some(64),
        "exit code 64 (EX_DATAERR-style usage error); stderr:\n{stderr}"
    );
    for path in [
        "backends[0].servers[0].address",
        "rules[0].match.path_regex",
        "rules[0].action.forward.backend",
        "rules[1].name",
        "rules[1].action.replace.source",
    ] {
        assert!(
            stderr.contains(path),
            "stderr should name {path}:\n{stderr}"
        );
    }
    let untouched = !data_dir.exists()
        || std::fs::read_dir(&data_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    assert!(untouched, "nothing may be written to sled on a bad config");

    // Malformed YAML names the line and column.
    std::fs::write(&config, "rules:\n  - name: a\n    match: [unclosed\n").expect("write");
    let (status, stderr) = run_to_exit(
        &switchyard_tests::process::bin_path("e2e-control-plane"),
        &args,
    );
    assert_eq!(status.code(), Some(64), "{stderr}");
    // `<file>:<line>:<column>: <message>`; process.rs covers more cases.
    let at = format!("{}:3:12: ", config.display());
    assert!(stderr.contains(&at), "should name {at}: {stderr}");
}
