//! Issue 4, end to end: the watched file, rollouts with acks and nacks,
//! static stability while the control plane is down, and convergence after
//! it comes back. Real processes, killed for real.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::{client, eventually, Backend, BackendMode, ControlPlane, DataPlane};

const WAIT: Duration = Duration::from_secs(30);

/// A config whose `/v` answers `marker`, plus `extra` YAML rules.
fn config_text(marker: &str, backend: &Backend, extra_rules: &str) -> String {
    format!(
        r#"
backends:
  - name: echo
    servers: [{{ address: "{addr}" }}]
content_sources:
  - name: marker
    inline: "{marker}"
  - name: page
    file: content/page.txt
rules:
  - name: marker
    match: {{ path_exact: /v }}
    action: {{ replace: {{ source: marker }} }}
  - name: page
    match: {{ path_exact: /page }}
    action: {{ replace: {{ source: page }} }}
{extra_rules}
  - name: echo
    action: {{ forward: {{ backend: echo }} }}
"#,
        addr = backend.addr
    )
}

/// Saves like an editor that writes a temp file and renames it over.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp~");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename over");
}

async fn body(url: &str) -> Option<String> {
    let r = client().get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

async fn wait_body(dp: &DataPlane, path: &str, want: &str) {
    let url = dp.proxy(path);
    eventually(
        &format!("{} serving {want:?} on {path}", dp.node_id),
        WAIT,
        || async { (body(&url).await.as_deref() == Some(want)).then_some(()) },
    )
    .await;
}

async fn nodes(cp: &ControlPlane) -> Option<Value> {
    client()
        .get(cp.api("/api/nodes"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn config_version(cp: &ControlPlane) -> Option<u64> {
    let r = client().get(cp.api("/api/config")).send().await.ok()?;
    r.headers()
        .get("etag")?
        .to_str()
        .ok()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// Waits until every listed node is connected and acked `version`.
async fn wait_all_acked(cp: &ControlPlane, ids: &[&str], version: u64) -> Value {
    eventually(
        &format!("nodes {ids:?} acking version {version}"),
        WAIT,
        || async {
            let n = nodes(cp).await?;
            let list = n["nodes"].as_array()?;
            let ok = ids.iter().all(|id| {
                list.iter().any(|x| {
                    x["node_id"] == *id && x["connected"] == true && x["acked_version"] == version
                })
            });
            ok.then_some(n)
        },
    )
    .await
}

async fn wait_ready(dp: &DataPlane) -> Value {
    eventually(&format!("{} ready", dp.node_id), WAIT, || async {
        let r = client().get(dp.admin("/readyz")).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    })
    .await
}

fn setup(dir: &Path, backend: &Backend) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("content")).expect("content dir");
    std::fs::write(dir.join("content/page.txt"), "page one\n").expect("page");
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, config_text("v1", backend, "")).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_file_and_content_changes_roll_out_and_bad_edits_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let config = setup(dir.path(), &backend);
    let cp = ControlPlane::start(dir.path(), &config);
    let dp1 = DataPlane::start(dir.path(), "node-1", &cp.grpc_url());
    let dp2 = DataPlane::start(dir.path(), "node-2", &cp.grpc_url());
    wait_all_acked(&cp, &["node-1", "node-2"], 1).await;
    wait_body(&dp1, "/v", "v1").await;

    // An editor's rename-over save: a new version reaches both nodes.
    save_by_rename(&config, &config_text("v2", &backend, ""));
    wait_all_acked(&cp, &["node-1", "node-2"], 2).await;
    wait_body(&dp1, "/v", "v2").await;
    wait_body(&dp2, "/v", "v2").await;

    // A half-written file (as seen mid-save) is rejected and changes nothing.
    let full = config_text("v3", &backend, "");
    std::fs::write(&config, &full[..full.len() / 2]).expect("half write");
    eventually(
        "the control plane rejecting the half-written file",
        WAIT,
        || async {
            cp.proc
                .stderr()
                .contains("config file rejected")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        config_version(&cp).await,
        Some(2),
        "a rejected file must not make a version"
    );
    assert_eq!(body(&dp2.proxy("/v")).await.as_deref(), Some("v2"));

    // Finishing the write makes version 3.
    std::fs::write(&config, &full).expect("full write");
    wait_all_acked(&cp, &["node-1", "node-2"], 3).await;
    wait_body(&dp2, "/v", "v3").await;

    // Editing a content file is a new version too, with the new bytes.
    std::fs::write(dir.path().join("content/page.txt"), "page two\n").expect("page");
    wait_all_acked(&cp, &["node-1", "node-2"], 4).await;
    wait_body(&dp1, "/page", "page two\n").await;
    wait_body(&dp2, "/page", "page two\n").await;

    // Touching the file without a change makes no version.
    std::fs::write(&config, &full).expect("same content");
    std::fs::write(dir.path().join("content/page.txt"), "page two\n").expect("same page");
    // The next real change gets the very next number: nothing was skipped.
    save_by_rename(&config, &config_text("v5", &backend, ""));
    wait_all_acked(&cp, &["node-1", "node-2"], 5).await;
    wait_body(&dp1, "/v", "v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacking_node_keeps_its_snapshot_while_the_others_move_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let config = setup(dir.path(), &backend);
    let cp = ControlPlane::start(dir.path(), &config);
    let good = DataPlane::start(dir.path(), "good", &cp.grpc_url());
    let picky = DataPlane::start_with(
        dir.path(),
        "picky",
        &cp.grpc_url(),
        &[("SWITCHYARD_FAULT_REJECT_RULE", "canary")],
    );
    wait_all_acked(&cp, &["good", "picky"], 1).await;

    let canary = r#"
  - name: canary
    match: { path_exact: /canary }
    action: { replace: { source: marker } }"#;
    save_by_rename(&config, &config_text("v2", &backend, canary));
    wait_all_acked(&cp, &["good"], 2).await;
    let fleet = eventually("picky's NACK recorded", WAIT, || async {
        let n = nodes(&cp).await?;
        let picky = n["nodes"]
            .as_array()?
            .iter()
            .find(|x| x["node_id"] == "picky")?
            .clone();
        (picky["last_nack"]["version"] == 2).then_some(n)
    })
    .await;
    let picky_view = fleet["nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["node_id"] == "picky"))
        .expect("picky listed");
    assert_eq!(picky_view["acked_version"], 1, "{picky_view}");
    assert_eq!(picky_view["connected"], true, "{picky_view}");
    let err = picky_view["last_nack"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("canary"), "the NACK error says why: {err}");
    assert_eq!(fleet["desired_version"], 2);

    // The picky node still serves version 1; the good one serves version 2.
    wait_body(&good, "/v", "v2").await;
    assert_eq!(body(&picky.proxy("/v")).await.as_deref(), Some("v1"));
    // Without the canary rule, /canary falls through to the backend there.
    let canary_body = body(&picky.proxy("/canary")).await.unwrap_or_default();
    assert!(
        canary_body.contains("\"backend\":\"echo\""),
        "{canary_body}"
    );
    assert_eq!(body(&good.proxy("/canary")).await.as_deref(), Some("v2"));
    let ready = wait_ready(&picky).await;
    assert_eq!(ready["version"], 1, "{ready}");
}

/// Sends requests to `urls` in a loop until `stop`; counts successes and
/// failures.
fn load(
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let http = client();
        while !stop.load(Ordering::SeqCst) {
            for url in &urls {
                match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => ok2.fetch_add(1, Ordering::SeqCst),
                    _ => failed2.fetch_add(1, Ordering::SeqCst),
                };
            }
        }
    });
    (ok, failed, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_survive_a_dead_control_plane_and_converge_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("echo", BackendMode::Echo).await;
    let config = setup(dir.path(), &backend);
    let mut cp = ControlPlane::start(dir.path(), &config);
    let (api, grpc) = (
        cp.proc.addr("api").to_string(),
        cp.proc.addr("grpc").to_string(),
    );
    let url = cp.grpc_url();
    let dp1 = DataPlane::start(dir.path(), "n1", &url);
    let dp2 = DataPlane::start(dir.path(), "n2", &url);
    let mut dp3 = DataPlane::start(dir.path(), "n3", &url);
    wait_all_acked(&cp, &["n1", "n2", "n3"], 1).await;

    // kill -9 the control plane under load: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, task) = load(
        vec![dp1.proxy("/v"), dp2.proxy("/page"), dp1.proxy("/echo")],
        stop.clone(),
    );
    eventually("load running", WAIT, || async {
        (ok.load(Ordering::SeqCst) > 20).then_some(())
    })
    .await;
    cp.proc.kill9();
    let before = ok.load(Ordering::SeqCst);
    eventually("load going on without the control plane", WAIT, || async {
        (ok.load(Ordering::SeqCst) > before + 100).then_some(())
    })
    .await;

    // A data plane restarted while the control plane is down serves its
    // cached snapshot and says so.
    drop(dp3);
    dp3 = DataPlane::start(dir.path(), "n3", &url);
    let ready = wait_ready(&dp3).await;
    assert_eq!(ready["source"], "cached", "{ready}");
    assert_eq!(ready["version"], 1, "{ready}");
    assert_eq!(body(&dp3.proxy("/v")).await.as_deref(), Some("v1"));
    assert_eq!(
        body(&dp3.proxy("/page")).await.as_deref(),
        Some("page one\n")
    );

    stop.store(true, Ordering::SeqCst);
    task.await.expect("load task");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed while the control plane was down"
    );

    // The file changes while the control plane is down; it comes back from
    // sled on the same ports, applies the file as version 2, and all three
    // nodes converge on it.
    save_by_rename(&config, &config_text("v2", &backend, ""));
    cp = ControlPlane::start_on(dir.path(), &config, &api, &grpc);
    wait_all_acked(&cp, &["n1", "n2", "n3"], 2).await;
    for dp in [&dp1, &dp2, &dp3] {
        wait_body(dp, "/v", "v2").await;
    }
    let ready = wait_ready(&dp3).await;
    assert_eq!(ready["source"], "control_plane", "{ready}");

    // Its history survived the crash.
    let history: Value = client()
        .get(cp.api("/api/config"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert!(history.is_object());
    assert_eq!(config_version(&cp).await, Some(2));
}
