//! Unit tests of the telemetry settings and per-request recording.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

use super::request::split_host_port;
use super::*;
use crate::metrics::RuleMetrics;
use crate::proxy::body::ProxyBody;

#[test]
fn host_and_port_split_like_the_semantic_conventions_want() {
    assert_eq!(
        split_host_port("example.com:8080"),
        ("example.com", Some(8080))
    );
    assert_eq!(split_host_port("example.com"), ("example.com", None));
    assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
    assert_eq!(split_host_port("::1"), ("::1", None));
}

#[test]
fn a_finished_request_counts_status_latency_and_bytes() {
    let rule = RuleMetrics::default();
    let mut req = Request::new(ProxyBody::Full(None));
    req.headers_mut()
        .insert("content-length", HeaderValue::from_static("12"));
    assert_eq!(request_bytes(&req), 12);
    let mut response = Response::new(ProxyBody::full(Bytes::from_static(b"hello")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    finish_request(&rule, Instant::now(), 12, &response, None);
    assert_eq!(rule.requests.load(Relaxed), 1);
    assert_eq!(rule.errors.load(Relaxed), 1);
    assert_eq!(rule.bytes_in.load(Relaxed), 12);
    assert_eq!(rule.bytes_out.load(Relaxed), 5);
    assert_eq!(rule.latency.snapshot().count, 1);
}

#[test]
fn without_export_no_span_is_started_and_headers_stay_untouched() {
    // No OTEL_* variables in unit tests: the tracer is never installed.
    let mut req = Request::builder()
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(())
        .unwrap_or_default();
    let span = RequestSpan::start(&mut req, "r", &HeaderValue::from_static("127.0.0.1"));
    assert!(span.is_none());
    assert_eq!(
        req.headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}
