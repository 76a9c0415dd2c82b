//! The REST middleware and the API's failure answers against a real
//! control-plane process: problem documents for malformed, unsupported,
//! oversized and misrouted requests, the rate limit, CORS, the loopback
//! guard, tokens from the environment, schemathesis with a token, and the
//! 404/409/422 cases of the named-item endpoints.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use switchyard_tests::process::bin_path;
use switchyard_tests::python::schemathesis;
use switchyard_tests::{client, eventually, send_for_json, ControlPlane};

const CONFIG: &str = r#"
backends:
  - name: echo
    servers: [{ address: "127.0.0.1:9" }]
content_sources:
  - name: marker
    inline: "v1"
rules:
  - name: marker
    match: { path_exact: /v, methods: [GET] }
    action: { replace: { source: marker } }
  - name: echo
    action: { forward: { backend: echo } }
"#;

fn setup(dir: &Path) -> PathBuf {
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, CONFIG).expect("config");
    path
}

/// A finished request: status, headers and the body (JSON when it is).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_problem(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json"))
            && self.body["status"] == self.status.as_u16()
    }

    fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

async fn answer(req: RequestBuilder) -> Answer {
    let (status, headers, body) = send_for_json(req).await;
    Answer {
        status,
        headers,
        body,
    }
}

async fn raw(method: Method, url: &str, content_type: &str, body: &str) -> Answer {
    answer(
        client()
            .request(method, url)
            .header("content-type", content_type)
            .body(body.to_owned()),
    )
    .await
}

async fn json_call(method: Method, url: &str, body: Option<&Value>, token: Option<&str>) -> Answer {
    let mut req = client().request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_errors_are_problem_documents_and_cors_follows_the_allowlist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    // The rate limit gets a process of its own (below): here it would
    // answer 429 to the checks that follow.
    let cp = ControlPlane::start_named(
        dir.path(),
        &config,
        &[
            "--max-body-bytes",
            "256",
            "--cors-origin",
            "https://ui.example",
        ],
        &[],
        "cp-middleware",
    );
    let rules = cp.api("/api/rules");

    // Malformed JSON: 400, the detail names line and column.
    let a = raw(
        Method::POST,
        &rules,
        "application/json",
        "{\n  \"name\": \"x\",\n  \"action\": }",
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.is_problem(), "{:?} {}", a.headers, a.body);
    assert!(
        a.detail().contains("line 3") && a.detail().contains("column"),
        "{}",
        a.body
    );

    // Not JSON: 415.
    let a = raw(Method::POST, &rules, "text/plain", "name=x").await;
    assert_eq!(a.status, 415, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);

    // Over --max-body-bytes: 413, for item bodies and whole configs alike.
    let big = json!({ "name": "big", "action": { "replace": { "source": "marker" } }, "request_headers": { "set": { "x-pad": "p".repeat(400) } } });
    let a = raw(Method::POST, &rules, "application/json", &big.to_string()).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    let a = raw(
        Method::PUT,
        &cp.api("/api/config"),
        "application/yaml",
        &CONFIG.repeat(2),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    // Nothing was created by any of the above.
    let a = json_call(Method::GET, &cp.api("/api/rules/big"), None, None).await;
    assert_eq!(a.status, 404);

    // A method the route lacks: 405 with Allow.
    let a = json_call(Method::PATCH, &cp.api("/api/rules/marker"), None, None).await;
    assert_eq!(a.status, 405, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    let allow = a
        .header("allow")
        .expect("Allow header")
        .to_ascii_uppercase();
    for m in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    assert!(!allow.contains("PATCH"), "Allow: {allow}");

    // Unknown route: 404.
    let a = json_call(Method::GET, &cp.api("/api/no-such-thing"), None, None).await;
    assert_eq!(a.status, 404);
    assert!(a.is_problem(), "{}", a.body);
    assert!(a.detail().contains("/api/no-such-thing"), "{}", a.body);

    // CORS: the allowed origin is echoed, another origin gets nothing.
    let from = |origin: &str| {
        client()
            .get(cp.api("/api/status"))
            .header("origin", origin.to_owned())
    };
    let a = answer(from("https://ui.example")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://ui.example")
    );
    let a = answer(from("https://evil.example")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), None);
    // A preflight for a write from the allowed origin is granted.
    let a = answer(
        client()
            .request(Method::OPTIONS, cp.api("/api/rules/marker"))
            .header("origin", "https://ui.example")
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type,if-match"),
    )
    .await;
    assert!(a.status.is_success(), "{}", a.status);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://ui.example")
    );
    assert!(
        a.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("PUT")),
        "{:?}",
        a.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let cp = ControlPlane::start_named(
        dir.path(),
        &config,
        &[
            "--max-body-bytes",
            "256",
            "--rate-limit-rps",
            "1",
            "--rate-limit-burst",
            "2",
            "--cors-origin",
            "https://ui.example",
        ],
        &[],
        "cp-ratelimit",
    );
    let status = cp.api("/api/status");
    // The bucket starts full: the burst passes.
    for i in 0..2 {
        let a = json_call(Method::GET, &status, None, None).await;
        assert_eq!(a.status, 200, "request {i} of the burst: {}", a.body);
    }
    // At one token a second, one of the next few back-to-back requests is
    // refused (even a slow machine does not take a second per request).
    let mut limited = None;
    for _ in 0..5 {
        let a = json_call(Method::GET, &status, None, None).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = limited.expect("no 429 in a burst of 7 at 1 rps, burst 2");
    assert!(a.is_problem(), "{}", a.body);
    assert_eq!(a.body["code"], "rate_limited");
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // The refusal is a normal answer: CORS headers still apply to it.
    let a = answer(client().get(&status).header("origin", "https://ui.example")).await;
    if a.status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("https://ui.example")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_holds_under_schemathesis_with_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let secret = "st-admin-secret-93f1";
    let cp = ControlPlane::start_named(
        dir.path(),
        &config,
        &["--api-token", &format!("schemathesis:admin:{secret}")],
        &[],
        "cp-schemathesis-auth",
    );
    let base = cp.api("");
    // Auth is really on: without the header the run would only see 401s.
    let a = json_call(Method::GET, &cp.api("/api/config"), None, None).await;
    assert_eq!(a.status, 401);
    // Same checks as the tokenless run in api_contract.rs, every request
    // carrying the admin token; few examples to stay well under a minute.
    let auth = format!("Authorization: Bearer {secret}");
    schemathesis(dir.path(), &base, &[auth], 4, 2, || cp.proc.stderr());
    // Requests were authenticated (the fetch of the public document aside,
    // some answered 200) and the secret stayed out of the log.
    let log = without_colours(&cp.proc.stderr());
    assert!(
        log.lines().any(|l| l.contains("api request")
            && l.contains("status=200")
            && !l.contains("openapi.json")),
        "no authenticated request succeeded:\n{log}"
    );
    assert!(!log.contains(secret), "the token reached the log");
}

/// The log without ANSI colour sequences (`ESC [ ... m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_api_stays_on_loopback_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());

    // All interfaces and no token: refused before anything is opened.
    let data_dir = dir.path().join("open-data");
    let out = Command::new(bin_path("e2e-control-plane"))
        .args(ControlPlane::args(
            &config,
            &data_dir,
            "0.0.0.0:0",
            "127.0.0.1:0",
        ))
        .env_remove("SWITCHYARD_API_TOKENS")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the control plane");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it started on 0.0.0.0 without tokens"
    );
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("refusing to serve the REST API on 0.0.0.0:0 without API tokens"),
        "{stderr}"
    );
    assert!(stderr.contains("SWITCHYARD_API_TOKENS"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing was listening"
    );
    assert!(!data_dir.exists(), "the data dir was created");

    // A normal start on loopback says it is open and loopback-only.
    let cp = ControlPlane::start_named(dir.path(), &config, &[], &[], "cp-loopback");
    let notice =
        "no API tokens configured: the REST API is unauthenticated and listens on loopback only";
    eventually(
        "the loopback-only notice",
        Duration::from_secs(10),
        || async { cp.proc.stderr().contains(notice).then_some(()) },
    )
    .await;
    assert!(cp.proc.addr("api").ip().is_loopback());
    let a = json_call(Method::GET, &cp.api("/api/config"), None, None).await;
    assert_eq!(a.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_environment_separate_read_from_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let (read, admin) = ("env-read-5e1c0a77", "env-admin-8d2b91f4");
    let tokens = format!("viewer:read:{read},ops:admin:{admin}");
    let cp = ControlPlane::start_named(
        dir.path(),
        &config,
        &[],
        &[("SWITCHYARD_API_TOKENS", &tokens)],
        "cp-env-tokens",
    );
    let config_url = cp.api("/api/config");
    let rules = cp.api("/api/rules");
    let rule = json!({ "name": "env", "match": { "path_prefix": "/env" }, "action": { "replace": { "source": "marker" } } });

    let a = json_call(Method::GET, &config_url, None, None).await;
    assert_eq!(a.status, 401);
    assert!(a.is_problem(), "{}", a.body);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = json_call(Method::GET, &config_url, None, Some("not-a-token")).await;
    assert_eq!(a.status, 401);
    let a = json_call(Method::GET, &config_url, None, Some(read)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = json_call(Method::POST, &rules, Some(&rule), Some(read)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    let a = json_call(Method::POST, &rules, Some(&rule), None).await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = json_call(Method::POST, &rules, Some(&rule), Some(admin)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = json_call(Method::GET, &cp.api("/api/rules/env"), None, Some(read)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = json_call(Method::GET, &cp.api("/api/audit?limit=1"), None, Some(read)).await;
    assert_eq!(a.body["entries"][0]["actor"], "ops", "{}", a.body);
    assert!(!a.body.to_string().contains(admin));

    // The secrets never reach the log; the loopback notice is not printed
    // when tokens are configured.
    let log = cp.proc.stderr();
    assert!(log.contains("api request"), "requests are logged:\n{log}");
    for secret in [read, admin] {
        assert!(!log.contains(secret), "a token secret reached the log");
    }
    assert!(!log.contains("no API tokens configured"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_item_failures_and_health_components() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let cp = ControlPlane::start_named(dir.path(), &config, &[], &[], "cp-failures");
    let api = |p: &str| cp.api(p);
    let ghost = json!({ "name": "ghost", "action": { "replace": { "source": "marker" } } });
    let sample = json!({ "method": "GET", "host": "x", "path": "/v", "headers": {} });

    // 404s.
    for (method, path, body) in [
        (Method::GET, "/api/rules/ghost", None),
        (Method::PUT, "/api/rules/ghost", Some(&ghost)),
        (Method::POST, "/api/rules/ghost/test", Some(&sample)),
        (Method::GET, "/api/config/history/999", None),
    ] {
        let a = json_call(method.clone(), &api(path), body, None).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
        assert!(a.is_problem(), "{method} {path}: {}", a.body);
        assert_eq!(a.body["code"], "not_found");
    }

    // 409 for a duplicate backend.
    let echo = json!({ "name": "echo", "servers": [{ "address": "127.0.0.1:10" }] });
    let a = json_call(Method::POST, &api("/api/backends"), Some(&echo), None).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    assert_eq!(a.body["code"], "already_exists");

    // 200 replacing a backend; the change is visible and versioned.
    let a = json_call(Method::PUT, &api("/api/backends/echo"), Some(&echo), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["changed"], true, "{}", a.body);
    assert_eq!(a.header("etag"), Some("\"2\""));
    let a = json_call(Method::GET, &api("/api/backends/echo"), None, None).await;
    assert_eq!(
        a.body["servers"][0]["address"], "127.0.0.1:10",
        "{}",
        a.body
    );

    // 422 for a rule naming a backend that does not exist.
    let orphan = json!({ "name": "orphan", "action": { "forward": { "backend": "missing" } } });
    let a = json_call(Method::POST, &api("/api/rules"), Some(&orphan), None).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.is_problem(), "{}", a.body);
    let problems = a.body["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{}", a.body);
    assert!(
        problems
            .iter()
            .all(|p| p["path"].is_string() && p["message"].is_string()),
        "{}",
        a.body
    );
    assert!(
        problems.iter().any(
            |p| p["message"].as_str().is_some_and(|m| m.contains("missing"))
                || p["path"].as_str().is_some_and(|x| x.contains("backend"))
        ),
        "no problem names the backend: {}",
        a.body
    );
    let a = json_call(Method::GET, &api("/api/rules/orphan"), None, None).await;
    assert_eq!(a.status, 404, "the invalid rule was not stored");

    // Health: every component, with statuses.
    let health = eventually(
        "gRPC and the file watcher up in /api/health",
        Duration::from_secs(10),
        || async {
            let a = json_call(Method::GET, &api("/api/health"), None, None).await;
            let c = &a.body["components"];
            (a.status == 200 && c["grpc"]["status"] == "ok" && c["file_watcher"]["status"] == "ok")
                .then_some(a.body)
        },
    )
    .await;
    let components = &health["components"];
    assert_eq!(components["storage"]["status"], "ok", "{health}");
    assert_eq!(components["nodes"]["total"], 0, "{health}");
    assert!(components["nodes"]["status"].is_string(), "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], 2, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_authenticates_and_a_bad_line_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path());
    let (read, admin) = ("file-read-71c2d9e0", "file-admin-4a8f03b6");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# who may call the API\nviewer:read:{read}\n\nops:admin:{admin}\n"),
    )
    .expect("write tokens");
    let tokens_arg = tokens.display().to_string();
    let cp = ControlPlane::start_named(
        dir.path(),
        &config,
        &["--api-tokens-file", &tokens_arg],
        &[],
        "cp-tokens-file",
    );
    let config_url = cp.api("/api/config");
    let rule = json!({ "name": "f", "match": { "path_prefix": "/f" }, "action": { "replace": { "source": "marker" } } });
    assert_eq!(
        json_call(Method::GET, &config_url, None, None).await.status,
        401
    );
    assert_eq!(
        json_call(Method::GET, &config_url, None, Some(read))
            .await
            .status,
        200
    );
    let rules = cp.api("/api/rules");
    let a = json_call(Method::POST, &rules, Some(&rule), Some(read)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = json_call(Method::POST, &rules, Some(&rule), Some(admin)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let log = cp.proc.stderr();
    assert!(
        !log.contains(read) && !log.contains(admin),
        "a secret reached the log"
    );

    // A bad line stops the start with the file and line named, and
    // nothing is opened.
    std::fs::write(&tokens, format!("viewer:read:{read}\nops:root:{admin}\n")).expect("write");
    let data_dir = dir.path().join("bad-tokens-data");
    let mut args = ControlPlane::args(&config, &data_dir, "127.0.0.1:0", "127.0.0.1:0");
    args.extend(["--api-tokens-file".to_owned(), tokens_arg.clone()]);
    let out = Command::new(bin_path("e2e-control-plane"))
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the control plane");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{tokens_arg}:2: unknown scope `root`")),
        "{stderr}"
    );
    assert!(!stderr.contains(admin), "the secret reached stderr");
    assert!(!data_dir.exists(), "the data dir was created");
}
