//! REST write endpoints through `oneshot`: PUT config (JSON/YAML, If-Match,
//! no-op), validate, reload, rules CRUD and test, history, rollback, audit,
//! content and status endpoints.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use super::tests::{app, call, get};

fn send(method: Method, uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("request")
}

fn json_req(method: Method, uri: &str, body: &Value) -> Request<Body> {
    send(method, uri, "application/json", body.to_string())
}

#[tokio::test]
async fn put_config_versions_no_ops_and_if_match() {
    let (_dir, _service, app) = app().await;
    let current = call(&app, get("/api/config")).await.json();

    // Identical config: no new version.
    let r = call(&app, json_req(Method::PUT, "/api/config", &current)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.json()["version"].clone(), r.json()["changed"].clone()),
        (json!(1), json!(false))
    );

    // A YAML body with If-Match on the current version.
    let yaml =
        crate::test_support::SAMPLE_YAML.replace("path_prefix: /maintenance", "path_prefix: /m");
    let mut req = send(Method::PUT, "/api/config", "application/yaml", yaml.clone());
    req.headers_mut()
        .insert(header::IF_MATCH, "\"1\"".parse().expect("hv"));
    let r = call(&app, req).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.headers.get(header::ETAG).expect("etag"), "\"2\"");

    // Stale If-Match: 412 and nothing changes.
    let mut req = send(
        Method::PUT,
        "/api/config",
        "application/yaml",
        yaml.replace("/m", "/n"),
    );
    req.headers_mut()
        .insert(header::IF_MATCH, "\"1\"".parse().expect("hv"));
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(
        call(&app, get("/api/config"))
            .await
            .headers
            .get(header::ETAG)
            .expect("etag"),
        "\"2\""
    );

    // Invalid: 422 with every problem.
    let bad = json!({ "rules": [{ "name": "x", "match": { "path_regex": "(" }, "action": { "forward": { "backend": "ghost" } } }] });
    let r = call(&app, json_req(Method::PUT, "/api/config", &bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let problems = r.json()["problems"].as_array().expect("problems").clone();
    assert!(problems.len() >= 2, "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| p["path"].is_string() && p["message"].is_string()));

    // Malformed JSON: 400 naming line and column; unsupported type: 415.
    let r = call(
        &app,
        send(
            Method::PUT,
            "/api/config",
            "application/json",
            "{\n  \"rules\": [,]\n}",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["detail"]
            .as_str()
            .expect("detail")
            .contains("line 2"),
        "{}",
        r.json()
    );
    let r = call(&app, send(Method::PUT, "/api/config", "text/plain", "x")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn validate_changes_nothing_and_returns_problems_or_the_diff() {
    let (_dir, _service, app) = app().await;
    let mut cfg = call(&app, get("/api/config")).await.json();
    cfg["rules"].as_array_mut().expect("rules").remove(0);
    let r = call(&app, json_req(Method::POST, "/api/config/validate", &cfg)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["valid"], true);
    assert_eq!(r.json()["summary"], "-rule maint");
    cfg["rules"][0]["action"]["forward"]["backend"] = json!("ghost");
    let r = call(&app, json_req(Method::POST, "/api/config/validate", &cfg)).await;
    assert_eq!(r.json()["valid"], false);
    assert_eq!(
        r.json()["problems"][0]["path"],
        "rules[0].action.forward.backend"
    );
    assert_eq!(
        call(&app, get("/api/config"))
            .await
            .headers
            .get(header::ETAG)
            .expect("etag"),
        "\"1\""
    );
}

#[tokio::test]
async fn rules_crud_positions_conflicts_and_test() {
    let (_dir, _service, app) = app().await;
    let rule = json!({ "name": "first", "match": { "path_exact": "/x" }, "action": { "forward": { "backend": "web" } } });
    let r = call(&app, json_req(Method::POST, "/api/rules?position=0", &rule)).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["summary"], "+rule first");
    let r = call(&app, json_req(Method::POST, "/api/rules", &rule)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let names: Vec<String> = call(&app, get("/api/rules")).await.json()["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, vec!["first", "maint", "api"]);

    // Move it last by PUT with a position.
    let r = call(
        &app,
        json_req(Method::PUT, "/api/rules/first?position=2", &rule),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        call(&app, get("/api/rules")).await.json()["rules"][2]["name"],
        "first"
    );
    let r = call(&app, json_req(Method::PUT, "/api/rules/ghost", &rule)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Explain: /x on another host matches `first`, but `maint`? no; `api`
    // only on api.example.com, so `first` wins.
    let sample = json!({ "method": "GET", "host": "www.example.com", "path": "/x" });
    let r = call(&app, json_req(Method::POST, "/api/rules/api/test", &sample)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(v["matched"], false);
    assert!(
        v["failed_condition"]
            .as_str()
            .expect("why")
            .contains("host"),
        "{v}"
    );
    assert_eq!(v["winning_rule"], "first");
    assert_eq!(v["action"]["forward"]["backend"], "web");
    let r = call(
        &app,
        json_req(Method::POST, "/api/rules/ghost/test", &sample),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = call(
        &app,
        Request::delete("/api/rules/first")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &app,
        Request::delete("/api/rules/first")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), "application/problem+json");
}

#[tokio::test]
async fn history_rollback_and_audit() {
    let (_dir, _service, app) = app().await;
    let r = call(
        &app,
        Request::delete("/api/rules/maint")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.json()["version"], 2);
    let r = call(
        &app,
        json_req(Method::POST, "/api/config/rollback/1", &json!(null)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], 3);
    let h = call(&app, get("/api/config/history")).await.json();
    let versions: Vec<u64> = h["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert_eq!(versions, vec![3, 2, 1]);
    let one = call(&app, get("/api/config/history/1")).await.json();
    assert_eq!(one["config"]["rules"][0]["name"], "maint");
    assert_eq!(
        call(&app, get("/api/config/history/42")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &app,
            json_req(Method::POST, "/api/config/rollback/42", &json!(null))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let audit = call(&app, get("/api/audit?limit=2")).await.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, vec!["rollback", "delete_rule"]);
    assert_eq!(audit["entries"][0]["from_version"], 2);
}

#[tokio::test]
async fn backends_and_sources_crud_reload_status_and_content() {
    let (dir, _service, app) = app().await;
    let backend = json!({ "name": "other", "servers": [{ "address": "127.0.0.1:9999" }] });
    assert_eq!(
        call(&app, json_req(Method::POST, "/api/backends", &backend))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, get("/api/backends/other")).await.json()["servers"][0]["weight"],
        1
    );
    assert_eq!(
        call(&app, get("/api/backends")).await.json()["backends"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Deleting a referenced backend is a 422.
    let r = call(
        &app,
        Request::delete("/api/backends/web")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let source = json!({ "name": "escape", "file": "../../etc/passwd" });
    let r = call(
        &app,
        json_req(Method::POST, "/api/content/sources", &source),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["problems"][0]["path"], "content_sources[2].file");
    let sources = call(&app, get("/api/content/sources")).await.json();
    assert_eq!(sources["sources"][0]["kind"], "file");
    assert_eq!(
        sources["sources"][0]["size"],
        crate::test_support::PAGE.len()
    );
    assert_eq!(
        sources["sources"][1]["content_type"],
        "text/plain; charset=utf-8"
    );

    // Reload: the file wins over the API edit.
    let r = call(
        &app,
        Request::post("/api/config/reload")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["summary"], "-backend other");
    std::fs::write(dir.path().join("conf/switchyard.yaml"), "rules: [").expect("break");
    let r = call(
        &app,
        Request::post("/api/config/reload")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let status = call(&app, get("/api/status")).await.json();
    assert_eq!(status["version"], 3);
    assert_eq!(status["counts"]["rules"], 2);
    let metrics = call(&app, get("/api/metrics")).await.json();
    assert_eq!(metrics["reporting_nodes"], 0);
    assert_eq!(
        call(&app, get("/api/content/cache/stats")).await.json()["nodes"],
        json!([])
    );
    let r = call(
        &app,
        Request::post("/api/content/cache/clear")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.json()["nodes_total"], 0);
    let r = call(
        &app,
        Request::delete("/api/content/cache/ghost")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        Request::delete("/api/content/cache/page")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}
