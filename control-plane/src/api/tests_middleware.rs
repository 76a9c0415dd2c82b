//! Middleware through `oneshot`: bearer auth and scopes, the actor in the
//! audit log, rate limiting, body limit, CORS, and the OpenAPI document.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::json;

use super::limits::RateLimit;
use super::tests::{app, call, get};
use super::{router_with, ApiConfig};

fn bearer(mut req: Request<Body>, secret: &str) -> Request<Body> {
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {secret}").parse().expect("header"),
    );
    req
}

fn delete_rule() -> Request<Body> {
    Request::delete("/api/rules/maint")
        .body(Body::empty())
        .expect("req")
}

#[tokio::test]
async fn tokens_and_scopes_guard_the_api_and_name_the_actor() {
    let (_dir, service, _) = app().await;
    let config = ApiConfig {
        tokens: vec![
            "ops:admin:admin-secret-1".parse().expect("token"),
            "viewer:read:read-secret-1".parse().expect("token"),
        ],
        ..ApiConfig::default()
    };
    let app = router_with(service, &config);
    let r = call(&app, get("/api/config")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers.get(header::WWW_AUTHENTICATE).expect("challenge"),
        "Bearer"
    );
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(
        call(&app, bearer(get("/api/config"), "wrong-secret"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, bearer(get("/api/config"), "read-secret-1"))
            .await
            .status,
        StatusCode::OK
    );
    // Health and the API description stay public.
    assert_ne!(
        call(&app, get("/api/openapi.json")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_ne!(
        call(&app, get("/api/health")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let r = call(&app, bearer(delete_rule(), "read-secret-1")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A dry run is a read.
    let sample = json!({ "host": "x", "path": "/maintenance" });
    let test = Request::post("/api/rules/maint/test")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(sample.to_string()))
        .expect("req");
    assert_eq!(
        call(&app, bearer(test, "read-secret-1")).await.status,
        StatusCode::OK
    );

    let r = call(&app, bearer(delete_rule(), "admin-secret-1")).await;
    assert_eq!(r.status, StatusCode::OK);
    let audit = call(&app, bearer(get("/api/audit?limit=1"), "read-secret-1"))
        .await
        .json();
    assert_eq!(audit["entries"][0]["actor"], "ops");
    // The secret never shows up in answers.
    assert!(!audit.to_string().contains("admin-secret-1"));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_client() {
    let (_dir, service, _) = app().await;
    let config = ApiConfig {
        rate_limit: Some(RateLimit {
            per_second: 0.5,
            burst: 2.0,
        }),
        ..ApiConfig::default()
    };
    let app = router_with(service, &config);
    let from = |ip: [u8; 4]| {
        let mut req = get("/api/status");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        req
    };
    assert_eq!(call(&app, from([10, 0, 0, 1])).await.status, StatusCode::OK);
    assert_eq!(call(&app, from([10, 0, 0, 1])).await.status, StatusCode::OK);
    let r = call(&app, from([10, 0, 0, 1])).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers
        .get(header::RETRY_AFTER)
        .expect("retry-after")
        .to_str()
        .expect("text")
        .parse()
        .expect("secs");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(r.json()["code"], "rate_limited");
    assert_eq!(call(&app, from([10, 0, 0, 2])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_cors_is_opt_in() {
    let (_dir, service, plain) = app().await;
    let config = ApiConfig {
        max_body_bytes: 64,
        cors_origins: vec!["https://ui.example.com".into()],
        ..ApiConfig::default()
    };
    let app = router_with(service, &config);
    let big = Request::put("/api/config")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; 1000]))
        .expect("req");
    let r = call(&app, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type(), "application/problem+json");

    let with_origin = |origin: &str| {
        Request::builder()
            .method(Method::GET)
            .uri("/api/status")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("req")
    };
    let r = call(&app, with_origin("https://ui.example.com")).await;
    assert_eq!(
        r.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .expect("acao"),
        "https://ui.example.com"
    );
    let r = call(&app, with_origin("https://evil.example.com")).await;
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let r = call(&plain, with_origin("https://ui.example.com")).await;
    assert!(
        r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
        "CORS is off by default"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_rest_route() {
    let (_dir, _service, app) = app().await;
    let r = call(&app, get("/api/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    let expected = [
        ("/api/health", "get"),
        ("/api/status", "get"),
        ("/api/nodes", "get"),
        ("/api/config", "get"),
        ("/api/config", "put"),
        ("/api/config/validate", "post"),
        ("/api/config/reload", "post"),
        ("/api/config/history", "get"),
        ("/api/config/history/{version}", "get"),
        ("/api/config/rollback/{version}", "post"),
        ("/api/audit", "get"),
        ("/api/rules", "get"),
        ("/api/rules", "post"),
        ("/api/rules/{name}", "get"),
        ("/api/rules/{name}", "put"),
        ("/api/rules/{name}", "delete"),
        ("/api/rules/{name}/test", "post"),
        ("/api/backends", "get"),
        ("/api/backends", "post"),
        ("/api/backends/{name}", "put"),
        ("/api/backends/{name}", "delete"),
        ("/api/content/sources", "get"),
        ("/api/content/sources", "post"),
        ("/api/content/sources/{name}", "delete"),
        ("/api/content/cache/clear", "post"),
        ("/api/content/cache/{source}", "delete"),
        ("/api/content/cache/stats", "get"),
    ];
    for (path, method) in expected {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        assert!(
            op["responses"]["200"].is_object() || op["responses"]["201"].is_object(),
            "{method} {path}"
        );
    }
    // Error answers are documented as problem documents.
    let put = &doc["paths"]["/api/config"]["put"]["responses"];
    for code in ["400", "412", "413", "415", "422"] {
        assert!(
            put[code]["content"]["application/problem+json"].is_object(),
            "PUT /api/config {code}"
        );
    }
    assert!(doc["components"]["schemas"]["ProblemDocument"].is_object());

    // Auth and the middleware's answers are in the document.
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(bearer["scheme"], "bearer", "{bearer}");
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    assert_eq!(
        doc["paths"]["/api/health"]["get"]["security"],
        json!([]),
        "health is public"
    );
    let problem_ref = json!({ "$ref": "#/components/schemas/ProblemDocument" });
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            let responses = &op["responses"];
            let is_problem = |code: &str| {
                responses[code]["content"]["application/problem+json"]["schema"] == problem_ref
            };
            assert!(is_problem("429"), "{method} {path}: 429");
            assert_eq!(
                responses["429"]["headers"]["Retry-After"]["schema"]["type"], "integer",
                "{method} {path}: Retry-After"
            );
            if path != "/api/health" {
                assert!(is_problem("401"), "{method} {path}: 401");
                assert!(
                    responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path}: WWW-Authenticate"
                );
            }
            let writes = !matches!(method.as_str(), "get" | "head")
                && path != "/api/config/validate"
                && !path.ends_with("/test");
            assert_eq!(
                responses["403"].is_object(),
                writes,
                "{method} {path}: 403 exactly on the operations that need admin"
            );
            if op["requestBody"].is_object() {
                for code in ["400", "413", "415"] {
                    assert!(is_problem(code), "{method} {path}: {code}");
                }
            }
        }
    }
    assert!(operations >= expected.len(), "{operations}");
}

fn json_post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("req")
}

#[tokio::test]
async fn wrong_shape_json_is_422_with_paths_and_bad_syntax_is_400_with_a_location() {
    let (_dir, _service, app) = app().await;
    let cases = [
        // A rule without `action`.
        (
            "/api/rules",
            r#"{"name": "x", "match": {"path_prefix": "/x"}}"#,
            "action",
            "missing field",
        ),
        // A field of the wrong type, nested.
        (
            "/api/rules",
            r#"{"name": "x", "match": {"path_prefix": 7}, "action": {"forward": {"backend": "web"}}}"#,
            "match.path_prefix",
            "invalid type",
        ),
        // A misspelt field.
        (
            "/api/backends",
            r#"{"name": "b", "servers": [{"adress": "127.0.0.1:1"}]}"#,
            "servers[0].adress",
            "unknown field",
        ),
        (
            "/api/rules/maint/test",
            r#"{"host": 1, "path": "/"}"#,
            "host",
            "invalid type",
        ),
    ];
    for (uri, body, path, message) in cases {
        let r = call(&app, json_post(uri, body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri} {body}");
        assert_eq!(r.content_type(), "application/problem+json");
        let v = r.json();
        assert_eq!(v["code"], "validation_failed", "{v}");
        let problems = v["problems"].as_array().expect("problems");
        assert_eq!(problems.len(), 1, "{v}");
        assert_eq!(problems[0]["path"], path, "{v}");
        let text = problems[0]["message"].as_str().expect("message");
        assert!(text.contains(message), "{v}");
        assert!(
            !text.contains(" at line "),
            "the location is in the detail: {v}"
        );
    }

    // The whole config too, on PUT; validate reports the shape problem as
    // its answer rather than failing.
    let body = r#"{"rules": [{"name": "x"}]}"#;
    let mut put = json_post("/api/config", body);
    *put.method_mut() = Method::PUT;
    let r = call(&app, put).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["problems"][0]["path"], "rules[0].action");
    let r = call(&app, json_post("/api/config/validate", body)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["valid"], false);
    assert_eq!(r.json()["problems"][0]["path"], "rules[0].action");

    // Syntax errors stay 400 and name line and column; trailing garbage too.
    let trailing = r#"{"name": "t", "action": {"replace": {"source": "page"}}} x"#;
    for (body, line, column) in [
        ("{\n  \"name\": ,\n}", 2, 11),
        (trailing, 1, trailing.len()),
    ] {
        let r = call(&app, json_post("/api/rules", body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.content_type(), "application/problem+json");
        let detail = r.json()["detail"].as_str().expect("detail").to_owned();
        assert!(
            detail.contains(&format!("line {line}, column {column}")),
            "{detail}"
        );
    }
    // Not JSON at all: 415.
    let mut plain = json_post("/api/rules", "name=x");
    plain
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().expect("hv"));
    let r = call(&app, plain).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.content_type(), "application/problem+json");
}
