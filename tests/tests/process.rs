//! The processes themselves: start-up failures (ports in use, malformed
//! YAML) that write nothing, graceful shutdown on SIGTERM/SIGINT, logging
//! flags, a data plane that starts before its control plane, and the
//! standalone binary on the example config.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_tests::process::{bin_path, run_to_exit, run_to_exit_with_env};
use switchyard_tests::{client, eventually, Backend, BackendMode, ControlPlane, DataPlane, Proc};

const READY: Duration = Duration::from_secs(30);

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A valid config: one backend, one forward rule, one replace rule.
fn config_yaml(backend: SocketAddr) -> String {
    format!(
        r#"
backends:
  - name: slow
    servers: [{{ address: "{backend}" }}]
    timeouts: {{ request: 30s }}
content_sources:
  - {{ name: hi, inline: "hi\n" }}
rules:
  - name: hi
    match: {{ path_exact: /hi }}
    action: {{ replace: {{ source: hi }} }}
  - name: slow
    action: {{ forward: {{ backend: slow }} }}
"#
    )
}

/// The rule `foundation.rs` uses for "nothing written": the data directory
/// does not exist, or exists empty.
fn untouched(dir: &Path) -> bool {
    !dir.exists()
        || std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn busy_port() -> (TcpListener, String) {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    (held, addr)
}

#[test]
fn control_plane_with_a_port_in_use_exits_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "ok.yaml",
        &config_yaml(([127, 0, 0, 1], 9).into()),
    );
    for role in ["api", "grpc"] {
        let (_held, busy) = busy_port();
        let data_dir = dir.path().join(format!("sled-{role}"));
        let (api, grpc) = match role {
            "api" => (busy.as_str(), "127.0.0.1:0"),
            _ => ("127.0.0.1:0", busy.as_str()),
        };
        let args = ControlPlane::args(&config, &data_dir, api, grpc);
        let (status, stderr) = run_to_exit(&bin_path("e2e-control-plane"), &args);
        assert!(!status.success(), "{role} port in use must fail: {stderr}");
        assert_eq!(status.code(), Some(1), "not a config error: {stderr}");
        assert!(
            stderr.contains(&busy) && stderr.contains(role),
            "stderr should name the {role} address {busy}:\n{stderr}"
        );
        assert!(
            untouched(&data_dir),
            "nothing may be written to sled when {role} cannot bind"
        );
    }
}

#[test]
fn data_plane_with_a_port_in_use_says_so_even_with_logging_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    for role in ["proxy", "admin"] {
        let (_held, busy) = busy_port();
        let cache = dir.path().join(format!("cache-{role}"));
        let (listen, admin) = match role {
            "proxy" => (busy.as_str(), "127.0.0.1:0"),
            _ => ("127.0.0.1:0", busy.as_str()),
        };
        let args: Vec<String> = [
            "--control-plane",
            "http://127.0.0.1:9",
            "--node-id",
            "busy",
            "--listen",
            listen,
            "--admin-listen",
            admin,
            "--cache-dir",
            &cache.display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (status, stderr) =
            run_to_exit_with_env(&bin_path("e2e-data-plane"), &args, &[("RUST_LOG", "off")]);
        assert_eq!(status.code(), Some(1), "{role}: {stderr}");
        assert!(
            stderr.contains(&busy) && stderr.contains(role),
            "stderr should name the {role} address {busy}:\n{stderr}"
        );
        assert!(
            untouched(&cache),
            "no cache folder for a node that never started"
        );
    }
}

#[test]
fn malformed_yaml_names_file_line_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("sled");
    // (file content, line, column) of the mistake.
    let cases = [
        // A tab where YAML allows only spaces.
        ("rules:\n  - name: a\n\tmatch: {}\n", 3, 1),
        // An unknown field on line 4.
        (
            "content_sources:\n  - { name: s, inline: x }\nrules:\n  - nmae: a\n",
            4,
            5,
        ),
        // A list where the file must be a mapping: the very first byte.
        ("- rules\n", 1, 1),
    ];
    for (text, line, column) in cases {
        let config = write(dir.path(), "bad.yaml", text);
        let args = ControlPlane::args(&config, &data_dir, "127.0.0.1:0", "127.0.0.1:0");
        let (status, stderr) = run_to_exit(&bin_path("e2e-control-plane"), &args);
        assert_eq!(status.code(), Some(64), "{text:?}: {stderr}");
        let want = format!("{}:{line}:{column}: ", config.display());
        assert!(
            stderr.contains(&want),
            "{text:?}: stderr should contain `{want}`:\n{stderr}"
        );
        assert!(untouched(&data_dir), "{text:?}: nothing may be persisted");
    }
}

/// A control plane and one data plane (with `dp_args`) in front of a
/// backend that answers after `delay`.
async fn slow_stack(
    dir: &Path,
    delay: Duration,
    dp_args: &[&str],
) -> (Backend, ControlPlane, DataPlane) {
    let backend = Backend::start("slow", BackendMode::Slow(delay)).await;
    let config = write(dir, "switchyard.yaml", &config_yaml(backend.addr));
    let cp = ControlPlane::start(dir, &config);
    let dp = DataPlane::start_with_args(dir, "node-1", &cp.grpc_url(), dp_args, &[]);
    dp.wait_ready(READY).await;
    (backend, cp, dp)
}

/// Sends one request in the background and waits until the backend has it.
async fn in_flight(
    backend: &Backend,
    url: String,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let before = backend.hits();
    let request = tokio::spawn(async move { client().get(url).send().await });
    eventually("the request reaches the backend", READY, || async {
        (backend.hits() > before).then_some(())
    })
    .await;
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, _cp, mut dp) = slow_stack(dir.path(), Duration::from_secs(1), &[]).await;
    let request = in_flight(&backend, dp.proxy("/slow")).await;

    dp.proc.signal("TERM");
    let response = request
        .await
        .expect("request task")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("echo body");
    assert_eq!(body["backend"], "slow");
    let status = dp.proc.exited_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}; stderr:\n{}",
        dp.proc.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_grace_bounds_how_long_a_slow_request_holds_the_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grace = Duration::from_millis(500);
    let (backend, _cp, mut dp) = slow_stack(
        dir.path(),
        Duration::from_secs(30),
        &["--shutdown-grace", "500ms"],
    )
    .await;
    let request = in_flight(&backend, dp.proxy("/slow")).await;

    let signalled = Instant::now();
    dp.proc.signal("TERM");
    let status = dp.proc.exited_within(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    assert!(status.is_some(), "still running after 20 s");
    assert!(
        took < grace + Duration::from_secs(2),
        "exited {took:?} after SIGTERM with a {grace:?} grace"
    );
    // The request that outlived the grace period was cut off.
    let answer = request.await.expect("request task");
    assert!(
        !answer.as_ref().is_ok_and(|r| r.status() == 200),
        "a 30 s request cannot have completed: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_exits_zero_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "switchyard.yaml",
        &config_yaml(([127, 0, 0, 1], 9).into()),
    );
    for signal in ["TERM", "INT"] {
        let mut cp = ControlPlane::start(dir.path(), &config);
        // A connected data plane: its sync stream must not hold the exit.
        let dp = DataPlane::start(dir.path(), &format!("node-{signal}"), &cp.grpc_url());
        dp.wait_ready(READY).await;
        let signalled = Instant::now();
        cp.proc.signal(signal);
        let status = cp.proc.exited_within(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal}: exit status {status:?}; stderr:\n{}",
            cp.proc.stderr()
        );
        // Well before the 10 s drain limit, which also exits 0.
        assert!(
            signalled.elapsed() < Duration::from_secs(8),
            "SIG{signal}: took {:?} to stop",
            signalled.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_json_logs_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "switchyard.yaml",
        &config_yaml(([127, 0, 0, 1], 9).into()),
    );
    let mut cp = ControlPlane::start_with(
        dir.path(),
        &config,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--log-format", "json"],
        &[],
    );
    // Some activity worth logging: a node connects and acks, an API call,
    // then a shutdown.
    let dp = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    dp.wait_ready(READY).await;
    let r = client()
        .get(cp.api("/api/config"))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 200);
    cp.proc.signal("TERM");
    let status = cp.proc.exited_within(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let stderr = cp.proc.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "too few log lines:\n{stderr}");
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"INFO\"")),
        "no INFO line:\n{stderr}"
    );
}

/// The level column of a text log line (`<time> <LEVEL> <target>: ...`).
fn level(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_honours_rust_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let config = write(dir.path(), "switchyard.yaml", &config_yaml(backend.addr));
    let cp = ControlPlane::start(dir.path(), &config);
    let mut quiet =
        DataPlane::start_with(dir.path(), "warn", &cp.grpc_url(), &[("RUST_LOG", "warn")]);
    let mut chatty = DataPlane::start_with(
        dir.path(),
        "debug",
        &cp.grpc_url(),
        &[("RUST_LOG", "debug")],
    );
    for dp in [&quiet, &chatty] {
        dp.wait_ready(READY).await;
        let r = client().get(dp.proxy("/x")).send().await.expect("proxy");
        assert_eq!(r.status(), 200);
    }
    // Stopping logs too (at INFO).
    for dp in [&mut quiet, &mut chatty] {
        dp.proc.signal("TERM");
        let status = dp.proc.exited_within(Duration::from_secs(20)).await;
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }

    let chatty_log = chatty.proc.stderr();
    let chatty_levels: Vec<&str> = chatty_log.lines().filter_map(level).collect();
    assert!(
        chatty_levels.contains(&"DEBUG"),
        "RUST_LOG=debug: no DEBUG line:\n{chatty_log}"
    );
    // The same run logs at INFO, so the quiet node had INFO lines to drop.
    assert!(
        chatty_levels.contains(&"INFO"),
        "no INFO line:\n{chatty_log}"
    );
    let quiet_log = quiet.proc.stderr();
    for line in quiet_log.lines() {
        assert!(
            matches!(level(line), Some("WARN" | "ERROR")),
            "RUST_LOG=warn let through: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_started_first_connects_once_the_control_plane_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let config = write(dir.path(), "switchyard.yaml", &config_yaml(backend.addr));
    let grpc = format!("127.0.0.1:{}", free_port());
    let dp = DataPlane::start(dir.path(), "early", &format!("http://{grpc}"));

    // It tried, failed, and is not ready (no control plane, no cache).
    eventually("a failed connection attempt", READY, || async {
        dp.proc
            .stderr()
            .contains("control plane not reachable")
            .then_some(())
    })
    .await;
    let r = client()
        .get(dp.admin("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert!(!r.status().is_success(), "ready without a snapshot");

    let cp = ControlPlane::start_on(dir.path(), &config, "127.0.0.1:0", &grpc);
    dp.wait_ready(READY).await;
    let r = client().get(dp.proxy("/hi")).send().await.expect("proxy");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hi\n");
    let nodes: Value = client()
        .get(cp.api("/api/nodes"))
        .send()
        .await
        .expect("nodes")
        .json()
        .await
        .expect("json");
    let node = &nodes["nodes"][0];
    assert_eq!(node["node_id"], "early", "{nodes}");
    assert_eq!(node["acked_version"], nodes["desired_version"], "{nodes}");
}

/// Copies `deploy/` into `dir` with the demo backends moved to `ports`.
fn example_config(dir: &Path, ports: [u16; 2]) -> std::path::PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(deploy.join("switchyard.yaml")).expect("example config");
    assert!(text.contains("127.0.0.1:9101") && text.contains("127.0.0.1:9102"));
    let text = text
        .replace("127.0.0.1:9101", &format!("127.0.0.1:{}", ports[0]))
        .replace("127.0.0.1:9102", &format!("127.0.0.1:{}", ports[1]));
    std::fs::create_dir_all(dir.join("content")).expect("content dir");
    std::fs::copy(
        deploy.join("content/maintenance.html"),
        dir.join("content/maintenance.html"),
    )
    .expect("copy maintenance page");
    write(dir, "switchyard.yaml", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_binary_serves_the_example_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = [free_port(), free_port()];
    let config = example_config(dir.path(), ports);
    let data_dir = dir.path().join("data");
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
        "--api-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--demo-backends",
        &format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut sy = Proc::start(
        &bin_path("e2e-switchyard"),
        &args,
        &["api", "grpc", "proxy", "admin"],
        dir.path(),
        "standalone",
    );
    let (proxy, api, admin) = (sy.url("proxy"), sy.url("api"), sy.url("admin"));

    // The URLs to try, with the ports actually bound.
    eventually("the welcome text", READY, || async {
        let out = sy.stdout();
        (out.contains(&format!("curl -i {proxy}/hello"))
            && out.contains(&format!("curl -s {api}/api/config"))
            && out.contains(&format!("curl -s {admin}/readyz")))
        .then_some(())
    })
    .await;
    let http = client();
    eventually("the data plane ready", READY, || async {
        let r = http.get(format!("{admin}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Replacement: inline content with its headers.
    let r = http
        .get(format!("{proxy}/hello"))
        .send()
        .await
        .expect("hello");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "switchyard");
    let text = r.text().await.expect("body");
    assert!(text.starts_with("Hello from Switchyard"), "{text}");
    let r = http
        .get(format!("{proxy}/api/users/42"))
        .send()
        .await
        .expect("mock");
    assert_eq!(r.headers()["content-type"], "application/json");
    let user: Value = r.json().await.expect("json");
    assert_eq!(user["name"], "Ada");
    let r = http
        .get(format!("{proxy}/"))
        .header("host", "maintenance.localhost")
        .send()
        .await
        .expect("maintenance");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "120");

    // Forwarding to the demo backends, round robin, /api stripped.
    let mut names = Vec::new();
    for _ in 0..2 {
        let r = http
            .get(format!("{proxy}/api/anything"))
            .send()
            .await
            .expect("forward");
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("body");
        assert!(text.contains("answered GET /anything"), "{text}");
        // "demo backend <name> answered GET /anything"
        names.push(text.split_whitespace().nth(2).unwrap_or("?").to_owned());
    }
    names.sort_unstable();
    assert_eq!(names, ["one", "two"]);

    // The API: config version and the node's ack.
    let r = http
        .get(format!("{api}/api/config"))
        .send()
        .await
        .expect("config");
    assert_eq!(r.status(), 200);
    let version: u64 = r.headers()["etag"]
        .to_str()
        .expect("etag")
        .trim_matches('"')
        .parse()
        .expect("numeric etag");
    let nodes = eventually("the node acked", READY, || async {
        let v: Value = http
            .get(format!("{api}/api/nodes"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["nodes"][0]["acked_version"] == version).then_some(v)
    })
    .await;
    assert_eq!(nodes["nodes"][0]["node_id"], "standalone", "{nodes}");
    assert!(
        !untouched(&data_dir.join("control-plane")),
        "sled under --data-dir"
    );

    sy.signal("TERM");
    let status = sy.exited_within(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}:\n{}",
        sy.stderr()
    );
}
