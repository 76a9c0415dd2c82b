//! The management API against a real control-plane process: the OpenAPI
//! document under schemathesis (property-based), and every endpoint's
//! success and failure cases as issue 3 specifies them.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_tests::process::{bin_path, Proc};
use switchyard_tests::python::{python, schemathesis};
use switchyard_tests::{client, send_for_json, ControlPlane};

const CONFIG: &str = r#"
backends:
  - name: echo
    servers: [{ address: "127.0.0.1:9" }]
content_sources:
  - name: marker
    inline: "v1"
  - name: page
    file: content/page.txt
rules:
  - name: marker
    match: { path_exact: /v, methods: [GET] }
    action: { replace: { source: marker } }
  - name: echo
    action: { forward: { backend: echo } }
"#;

fn setup(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("content")).expect("content dir");
    std::fs::write(dir.join("content/page.txt"), "page one\n").expect("page");
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, CONFIG).expect("config");
    path
}

async fn send(
    method: Method,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = client().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    send_for_json(req).await
}

fn ctype(h: &reqwest::header::HeaderMap) -> String {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn etag(h: &reqwest::header::HeaderMap) -> String {
    h.get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_holds_under_schemathesis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let cp = ControlPlane::start(dir.path(), &config);
    let base = cp.api("");
    // Random bodies and If-Match values legitimately answer 412 (stale
    // version), 409 (duplicate name) and 422 (schema-valid but semantically
    // invalid config, e.g. a rule naming a backend that does not exist):
    // each is documented per operation, so status conformance accepts
    // exactly those.
    schemathesis(dir.path(), &base, &[], 10, 1, || cp.proc.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_specified() {
    use Method as M;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let cp = ControlPlane::start(dir.path(), &config);
    let api = |p: &str| cp.api(p);

    // Config read, ETag, YAML.
    let (s, h, cfg) = send(M::GET, &api("/api/config"), None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(etag(&h), "\"1\"");
    assert_eq!(cfg["rules"][0]["name"], "marker");
    let yaml = client()
        .get(api("/api/config?format=yaml"))
        .send()
        .await
        .expect("yaml");
    assert!(ctype(yaml.headers()).contains("yaml"));
    assert!(yaml.text().await.expect("text").contains("name: marker"));

    // Validate: current config is OK; a change shows its diff; invalid lists problems.
    let (s, _, v) = send(
        M::POST,
        &api("/api/config/validate"),
        Some(cfg.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["valid"], true);
    let mut changed = cfg.clone();
    changed["content_sources"][0]["inline"] = json!("v2");
    let (_, _, v) = send(
        M::POST,
        &api("/api/config/validate"),
        Some(changed.clone()),
        &[],
    )
    .await;
    assert_eq!(v["valid"], true);
    assert!(v["diff"].is_object(), "{v}");
    let mut broken = cfg.clone();
    broken["rules"][1]["action"] = json!({"forward": {"backend": "nope"}});
    broken["rules"][0]["match"]["path_regex"] = json!("(");
    let (s, _, v) = send(
        M::POST,
        &api("/api/config/validate"),
        Some(broken.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["valid"], false);
    assert!(v["problems"].as_array().map_or(0, |p| p.len()) >= 2, "{v}");

    // PUT: stale If-Match 412, malformed 400 problem+json, invalid 422, ok -> v2,
    // identical -> no new version, YAML body.
    let (s, _, _) = send(
        M::PUT,
        &api("/api/config"),
        Some(cfg.clone()),
        &[("If-Match", "\"999999999\"")],
    )
    .await;
    assert_eq!(s, 412);
    let r = client()
        .put(api("/api/config"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert!(ctype(r.headers()).contains("problem+json"));
    let (s, h, v) = send(M::PUT, &api("/api/config"), Some(broken), &[]).await;
    assert_eq!(s, 422, "{v}");
    assert!(ctype(&h).contains("problem+json"));
    assert!(v["problems"].as_array().map_or(0, |p| p.len()) >= 2, "{v}");
    let (s, h, v) = send(
        M::PUT,
        &api("/api/config"),
        Some(changed.clone()),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(etag(&h), "\"2\"");
    let (_, _, v) = send(M::PUT, &api("/api/config"), Some(changed.clone()), &[]).await;
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(v["version"], 2);
    let yaml_body = CONFIG.replace("\"v1\"", "\"v3\"");
    let r = client()
        .put(api("/api/config"))
        .header("content-type", "application/yaml")
        .body(yaml_body)
        .send()
        .await
        .expect("yaml put");
    assert_eq!(r.status(), 200);
    assert_eq!(etag(r.headers()), "\"3\"");

    // Reload: an invalid file changes nothing and reports every problem.
    std::fs::write(
        &config,
        CONFIG
            .replace("source: marker", "source: missing")
            .replace("backend: echo }", "backend: gone }"),
    )
    .expect("write");
    let (s, _, v) = send(M::POST, &api("/api/config/reload"), None, &[]).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["problems"].as_array().map_or(0, |p| p.len()) >= 2, "{v}");
    let (_, h, _) = send(M::GET, &api("/api/config"), None, &[]).await;
    assert_eq!(etag(&h), "\"3\"");
    std::fs::write(&config, CONFIG).expect("write");
    let (s, _, v) = send(M::POST, &api("/api/config/reload"), None, &[]).await;
    assert!(s.is_success(), "{v}");
    assert_eq!(v["version"], 4, "{v}");

    // Rules CRUD.
    let (s, _, v) = send(M::GET, &api("/api/rules"), None, &[]).await;
    assert_eq!(s, 200);
    let probe = json!({"name": "probe", "match": {"path_prefix": "/p"}, "action": {"replace": {"source": "page"}}});
    let (s, _, v2) = send(
        M::POST,
        &api("/api/rules?position=0"),
        Some(probe.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{v2}");
    let (s, h, _) = send(M::POST, &api("/api/rules"), Some(probe.clone()), &[]).await;
    assert_eq!(s, 409);
    assert!(ctype(&h).contains("problem+json"));
    let (s, _, _) = send(
        M::PUT,
        &api("/api/rules/probe"),
        Some(probe.clone()),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_eq!(s, 412);
    let (s, _, _) = send(
        M::PUT,
        &api("/api/rules/probe?position=1"),
        Some(probe.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (_, _, rules) = send(M::GET, &api("/api/rules"), None, &[]).await;
    assert_eq!(rules["rules"][1]["name"], "probe", "{rules} (was {v})");
    let (s, h, _) = send(M::DELETE, &api("/api/rules/no-such-rule"), None, &[]).await;
    assert_eq!(s, 404);
    assert!(ctype(&h).contains("problem+json"));

    // Explain: matched, failed condition, winner and its action.
    let sample = json!({"method": "POST", "host": "x", "path": "/v", "headers": {}});
    let (s, _, e) = send(M::POST, &api("/api/rules/marker/test"), Some(sample), &[]).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["matched"], false);
    assert!(
        e["failed_condition"]
            .as_str()
            .unwrap_or("")
            .contains("method"),
        "{e}"
    );
    assert_eq!(e["winning_rule"], "echo");
    assert!(e["action"]["forward"].is_object(), "{e}");
    let sample = json!({"method": "GET", "host": "x", "path": "/v", "headers": {}});
    let (_, _, e) = send(M::POST, &api("/api/rules/marker/test"), Some(sample), &[]).await;
    assert_eq!(e["matched"], true, "{e}");
    assert_eq!(e["winning_rule"], "marker");
    let (s, _, _) = send(M::DELETE, &api("/api/rules/probe"), None, &[]).await;
    assert_eq!(s, 200);

    // Backends and sources CRUD.
    let b = json!({"name": "b2", "servers": [{"address": "127.0.0.1:10"}], "timeouts": {"connect": "1s"}});
    assert_eq!(
        send(M::POST, &api("/api/backends"), Some(b.clone()), &[])
            .await
            .0,
        201
    );
    assert_eq!(
        send(M::GET, &api("/api/backends/b2"), None, &[]).await.2["timeouts"]["connect"],
        "1s"
    );
    assert_eq!(
        send(M::DELETE, &api("/api/backends/echo"), None, &[])
            .await
            .0,
        422,
        "a rule names it"
    );
    assert_eq!(
        send(M::DELETE, &api("/api/backends/b2"), None, &[]).await.0,
        200
    );
    let src = json!({"name": "s2", "inline": "x"});
    assert_eq!(
        send(M::POST, &api("/api/content/sources"), Some(src), &[])
            .await
            .0,
        201
    );
    assert_eq!(
        send(M::DELETE, &api("/api/content/sources/s2"), None, &[])
            .await
            .0,
        200
    );

    // Reads of the plan.
    for p in [
        "/api/content/sources",
        "/api/content/cache/stats",
        "/api/metrics",
        "/api/health",
        "/api/status",
        "/api/nodes",
        "/api/config/history",
        "/api/audit",
        "/api/config/history/1",
    ] {
        let (s, _, v) = send(M::GET, &api(p), None, &[]).await;
        assert_eq!(s, 200, "{p}: {v}");
    }
    assert_eq!(
        send(M::POST, &api("/api/content/cache/clear"), None, &[])
            .await
            .0,
        200
    );
    assert_eq!(
        send(M::DELETE, &api("/api/content/cache/nope"), None, &[])
            .await
            .0,
        404
    );
    let (s, h, _) = send(M::GET, &api("/api/no-such-endpoint"), None, &[]).await;
    assert_eq!(s, 404);
    assert!(ctype(&h).contains("problem+json"));
    assert_eq!(send(M::PATCH, &api("/api/config"), None, &[]).await.0, 405);
    let (_, _, doc) = send(M::GET, &api("/api/openapi.json"), None, &[]).await;
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    for p in [
        "/api/config",
        "/api/config/reload",
        "/api/config/validate",
        "/api/rules",
        "/api/rules/{name}",
        "/api/rules/{name}/test",
        "/api/content/sources",
        "/api/content/cache/clear",
        "/api/content/cache/{source}",
        "/api/content/cache/stats",
        "/api/metrics",
        "/api/health",
        "/api/status",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }

    // History, rollback, audit.
    let (_, _, hist) = send(M::GET, &api("/api/config/history"), None, &[]).await;
    let current = hist["current_version"].as_u64().expect("current_version");
    let (_, _, old) = send(M::GET, &api("/api/config/history/2"), None, &[]).await;
    assert_eq!(old["config"]["content_sources"][0]["inline"], "v2");
    let (s, _, v) = send(M::POST, &api("/api/config/rollback/2"), None, &[]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], current + 1);
    let (_, _, now) = send(M::GET, &api("/api/config"), None, &[]).await;
    assert_eq!(now["content_sources"][0]["inline"], "v2");
    assert_eq!(
        send(M::POST, &api("/api/config/rollback/999"), None, &[])
            .await
            .0,
        404
    );
    let (_, _, audit) = send(M::GET, &api("/api/audit"), None, &[]).await;
    let newest = &audit["entries"][0];
    assert_eq!(newest["to_version"], current + 1, "{audit}");
    assert_eq!(newest["from_version"], current);

    // Two writers with the same If-Match: exactly one wins, the other 412.
    let tag = format!("\"{}\"", current + 1);
    let mut a = now.clone();
    a["content_sources"][0]["inline"] = json!("writer-a");
    let mut b = now.clone();
    b["content_sources"][0]["inline"] = json!("writer-b");
    let (url, im) = (api("/api/config"), [("If-Match", tag.as_str())]);
    let (ra, rb) = tokio::join!(
        send(M::PUT, &url, Some(a), &im),
        send(M::PUT, &url, Some(b), &im),
    );
    let mut statuses = [ra.0.as_u16(), rb.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);

    // Restart: config, version, history and audit survive.
    let (_, h, before) = send(M::GET, &api("/api/config"), None, &[]).await;
    let (_, _, hist_before) = send(M::GET, &api("/api/config/history"), None, &[]).await;
    let (_, _, audit_before) = send(M::GET, &api("/api/audit"), None, &[]).await;
    let (api_addr, grpc_addr) = (
        cp.proc.addr("api").to_string(),
        cp.proc.addr("grpc").to_string(),
    );
    let mut cp = cp;
    cp.proc.terminate();
    drop(cp);
    let cp = ControlPlane::start_on(dir.path(), &config, &api_addr, &grpc_addr);
    let (_, h2, after) = send(M::GET, &cp.api("/api/config"), None, &[]).await;
    assert_eq!(etag(&h), etag(&h2));
    assert_eq!(before, after);
    assert_eq!(
        send(M::GET, &cp.api("/api/config/history"), None, &[])
            .await
            .2,
        hist_before
    );
    assert_eq!(
        send(M::GET, &cp.api("/api/audit"), None, &[]).await.2,
        audit_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_separate_read_from_admin_and_are_never_echoed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let mut args = ControlPlane::args(
        &config,
        &dir.path().join("cp-data"),
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    args.extend([
        "--api-token".into(),
        "viewer:read:s3cret-read".into(),
        "--api-token".into(),
        "ops:admin:s3cret-admin".into(),
    ]);
    let proc = Proc::start(
        &bin_path("e2e-control-plane"),
        &args,
        &["api", "grpc"],
        dir.path(),
        "cp-auth",
    );
    let api = |p: &str| format!("{}{p}", proc.url("api"));
    let rule = json!({"name": "t", "action": {"replace": {"source": "page"}}});
    let read = [("Authorization", "Bearer s3cret-read")];
    let admin = [("Authorization", "Bearer s3cret-admin")];

    assert_eq!(
        send(Method::GET, &api("/api/config"), None, &[]).await.0,
        401
    );
    assert_eq!(
        send(
            Method::GET,
            &api("/api/config"),
            None,
            &[("Authorization", "Bearer wrong")]
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(Method::GET, &api("/api/config"), None, &read).await.0,
        200
    );
    let (s, _, v) = send(Method::POST, &api("/api/rules"), Some(rule.clone()), &read).await;
    assert_eq!(s, 403);
    assert!(!v.to_string().contains("s3cret"), "{v}");
    let (s, _, _) = send(Method::POST, &api("/api/rules"), Some(rule), &admin).await;
    assert_eq!(s, 201);
    let (_, _, audit) = send(Method::GET, &api("/api/audit"), None, &read).await;
    assert_eq!(audit["entries"][0]["actor"], "ops");
    assert!(!audit.to_string().contains("s3cret"));
    assert!(!proc.stderr().contains("s3cret"), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_admin_service_works_from_python_grpcio() {
    let py = python("grpc, grpc_tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    // With tokens, so the script also checks scopes and the public health RPC.
    let mut args = ControlPlane::args(
        &config,
        &dir.path().join("cp-data"),
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    args.extend([
        "--api-token".into(),
        "viewer:read:grpc-read-secret".into(),
        "--api-token".into(),
        "ops:admin:grpc-admin-secret".into(),
    ]);
    let proc = Proc::start(
        &bin_path("e2e-control-plane"),
        &args,
        &["api", "grpc"],
        dir.path(),
        "cp-grpc",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&py)
        .arg(root.join("python/grpc_admin_check.py"))
        .arg(proc.addr("grpc").to_string())
        .arg(root.join("../proto"))
        .arg("grpc-admin-secret")
        .arg("grpc-read-secret")
        .output()
        .expect("run grpc_admin_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpc check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok PutConfig stale if_version -> FAILED_PRECONDITION",
        "ok CreateRule duplicate -> ALREADY_EXISTS",
        "ok DeleteRule unknown -> NOT_FOUND",
        "ok Rollback restores the rule as a new version",
        "ok Rollback stale if_version -> FAILED_PRECONDITION",
        "ok GetRule py-rule version=",
        "ok GetRule unknown -> NOT_FOUND",
        "ok UpdateRule position=1 -> ['marker', 'py-rule', 'echo']",
        "ok UpdateRule stale if_version -> FAILED_PRECONDITION",
        "ok UpdateRule position above the maximum -> INVALID_ARGUMENT",
        "ok TestRule marker on /py/x: not matched (",
        "winner py-rule replace page",
        "ok TestRule marker on /v: matched and wins",
        "ok TestRule unknown -> NOT_FOUND",
        "ok TestRule bad path -> INVALID_ARGUMENT",
        "ok GetHistoryEntry version=",
        "ok GetHistoryEntry unknown -> NOT_FOUND",
        "ok ListBackends [echo]",
        "ok CreateBackend version=",
        "ok CreateBackend duplicate -> ALREADY_EXISTS",
        "ok CreateBackend with a read token -> PERMISSION_DENIED",
        "ok CreateBackend without servers -> INVALID_ARGUMENT",
        "ok GetBackend py-backend (read token)",
        "ok GetBackend unknown -> NOT_FOUND",
        "ok UpdateBackend stale if_version -> FAILED_PRECONDITION",
        "ok UpdateBackend adds a server",
        "ok UpdateBackend unknown -> NOT_FOUND",
        "ok DeleteBackend still used by a rule -> INVALID_ARGUMENT",
        "ok DeleteBackend py-backend",
        "ok DeleteBackend unknown -> NOT_FOUND",
        "ok ListContentSources ['marker', 'page'] page sha256=",
        "ok CreateContentSource py-src",
        "ok CreateContentSource duplicate -> ALREADY_EXISTS",
        "ok CreateContentSource without content -> INVALID_ARGUMENT",
        "ok GetContentSource py-src",
        "ok GetContentSource unknown -> NOT_FOUND",
        "ok UpdateContentSource py-src",
        "ok UpdateContentSource unknown -> NOT_FOUND",
        "ok DeleteContentSource still used by a rule -> INVALID_ARGUMENT",
        "ok DeleteContentSource py-src",
        "ok DeleteContentSource unknown -> NOT_FOUND",
        "ok ClearCache all: nodes_total=0 nodes_confirmed=0 nodes=[]",
        "ok ClearCache page",
        "ok ClearCache unknown source -> NOT_FOUND",
        "ok ClearCache with a read token -> PERMISSION_DENIED",
        "ok GetCacheStats (no node reported)",
        "ok GetCacheStats without a token -> UNAUTHENTICATED",
        "ok GetStatus version=",
        "ok GetStatus without a token -> UNAUTHENTICATED",
        "ok GetHealth ",
        "without a token (public like /api/health)",
        "ok GetRule with an unknown token -> UNAUTHENTICATED",
        "entries by ops, newest ",
        "ok ListAudit before/limit pages backwards",
        "ok ListAudit limit=0 -> INVALID_ARGUMENT",
        "ok WatchEvents received config_changed",
        "ok health SERVING",
        "grpc admin check passed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("switchyard.v1.Admin"), "{stdout}");
    // Tokens reach neither the answers the script printed nor the log.
    assert!(!stdout.contains("grpc-admin-secret"), "{stdout}");
    assert!(
        !proc.stderr().contains("grpc-admin-secret"),
        "a token reached the log"
    );
}
