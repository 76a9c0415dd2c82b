//! What one routed request records: rule counters, latency and bytes
//! always; a server span with the HTTP semantic-convention attributes when
//! tracing is on, its context written into the upstream request.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Version};
use http_body::Body;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::metrics::RuleMetrics;

/// Declared request body size: `Content-Length`, else the body's exact
/// size hint, else 0 (a chunked body of unknown length is not counted).
pub fn request_bytes<B: Body>(req: &Request<B>) -> u64 {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| req.body().size_hint().exact())
        .unwrap_or(0)
}

/// Records the answered request against its rule and ends its span.
pub fn finish_request<B: Body>(
    metrics: &RuleMetrics,
    started: Instant,
    bytes_in: u64,
    response: &Response<B>,
    span: Option<RequestSpan>,
) {
    let status = response.status().as_u16();
    if crate::metrics::request_metrics_on() {
        let bytes_out = response.body().size_hint().exact().unwrap_or(0);
        metrics.record(status);
        metrics.latency.record(started.elapsed());
        metrics.bytes_in.fetch_add(bytes_in, Relaxed);
        metrics.bytes_out.fetch_add(bytes_out, Relaxed);
    }
    if let Some(span) = span {
        span.end(status);
    }
}

/// The server span of one request (only exists while tracing is on).
#[derive(Debug)]
pub struct RequestSpan {
    cx: Context,
}

impl RequestSpan {
    /// Starts the span as a child of the client's `traceparent` (if any)
    /// and replaces the request's `traceparent`/`tracestate` with the
    /// span's, so the backend continues the same trace. `None` (and no
    /// work) when tracing is off.
    pub fn start<B>(req: &mut Request<B>, rule: &str, client_ip: &HeaderValue) -> Option<Self> {
        let tracer = super::tracer()?;
        let propagator = TraceContextPropagator::new();
        let parent = propagator.extract(&HeaderExtractor(req.headers()));
        let method = req.method().as_str().to_owned();
        let mut attrs = Vec::with_capacity(12);
        attrs.push(KeyValue::new("http.request.method", method.clone()));
        attrs.push(KeyValue::new("url.path", req.uri().path().to_owned()));
        if let Some(q) = req.uri().query() {
            attrs.push(KeyValue::new("url.query", q.to_owned()));
        }
        attrs.push(KeyValue::new("url.scheme", "http"));
        attrs.push(KeyValue::new("http.route", rule.to_owned()));
        attrs.push(KeyValue::new("switchyard.rule", rule.to_owned()));
        attrs.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(req.version()),
        ));
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
        if let Some(host) = host {
            let (name, port) = split_host_port(&host);
            attrs.push(KeyValue::new("server.address", name.to_owned()));
            if let Some(port) = port {
                attrs.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        if let Ok(ip) = client_ip.to_str() {
            attrs.push(KeyValue::new("client.address", ip.to_owned()));
        }
        if let Some(ua) = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()) {
            attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        let span = tracer
            .span_builder(format!("{method} {rule}"))
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(span);
        propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        Some(Self { cx })
    }

    fn end(self, status: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `host[:port]` (IPv6 literals in brackets).
pub(super) fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            return (name, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
