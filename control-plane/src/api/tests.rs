//! REST endpoints through `oneshot` on the router (no socket).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::router;
use crate::service::Service;
use crate::test_support::{fixture, prepared_service, SAMPLE_YAML};

pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(crate) async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub(crate) async fn app() -> (tempfile::TempDir, Service, Router) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = fixture(dir.path(), SAMPLE_YAML);
    let service = prepared_service(&options).await;
    let app = router(service.clone());
    (dir, service, app)
}

#[tokio::test]
async fn get_config_has_an_etag_and_a_yaml_form() {
    let (_dir, _service, app) = app().await;
    let r = call(&app, get("/api/config")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get(header::ETAG).expect("etag"), "\"1\"");
    assert_eq!(r.json()["rules"][0]["name"], "maint");
    assert_eq!(r.json()["rules"][0]["match"]["path_prefix"], "/maintenance");

    let r = call(&app, get("/api/config?format=yaml")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("application/yaml"));
    let parsed = switchyard_shared::parse::parse_yaml(std::str::from_utf8(&r.body).expect("utf8"))
        .expect("yaml round-trips");
    assert_eq!(parsed.rules.len(), 2);
}

#[tokio::test]
async fn get_rules_lists_them_in_order_with_the_version() {
    let (_dir, _service, app) = app().await;
    let r = call(&app, get("/api/rules")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["version"], 1);
    let names: Vec<&str> = v["rules"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["maint", "api"]);
}

#[tokio::test]
async fn nodes_lists_desired_version_and_registered_nodes() {
    let (_dir, service, app) = app().await;
    let r = call(&app, get("/api/nodes")).await;
    assert_eq!(
        r.json(),
        serde_json::json!({ "desired_version": 1, "nodes": [] })
    );

    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let hello = switchyard_shared::proto::Hello {
        node_id: "dp-1".into(),
        build: "test".into(),
        last_applied_version: 0,
        hash: String::new(),
        accepts_delta: false,
    };
    service.node_connected(&hello, tx);
    service.nodes().nack("dp-1", 1, "boom".into());
    let v = call(&app, get("/api/nodes")).await.json();
    let node = &v["nodes"][0];
    assert_eq!(node["node_id"], "dp-1");
    assert_eq!(node["connected"], true);
    assert_eq!(node["acked_version"], 0);
    assert_eq!(
        node["last_nack"],
        serde_json::json!({ "version": 1, "error": "boom" })
    );
    assert_eq!(node["build"], "test");
    let seen = node["last_seen"].as_str().expect("last_seen");
    assert!(
        time::OffsetDateTime::parse(seen, &time::format_description::well_known::Rfc3339).is_ok(),
        "{seen}"
    );
}

#[tokio::test]
async fn health_reports_components_and_503_without_grpc() {
    let (_dir, service, app) = app().await;
    let r = call(&app, get("/api/health")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["components"]["storage"]["status"], "ok");
    assert_eq!(r.json()["components"]["grpc"]["status"], "down");
    service.components().set_grpc(true);
    let r = call(&app, get("/api/health")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["version"], 1);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problem_documents() {
    let (_dir, _service, app) = app().await;
    let r = call(&app, get("/api/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.json()["status"], 404);
    assert_eq!(r.json()["code"], "not_found");

    let req = Request::builder()
        .method(Method::PATCH)
        .uri("/api/nodes")
        .body(Body::empty())
        .expect("request");
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.json()["status"], 405);
    assert!(r.headers.get(header::ALLOW).is_some());
}
