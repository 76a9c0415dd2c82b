//! Type conversions between the service layer's answers and the Admin
//! service's messages. Nothing here decides anything: every check lives in
//! the service layer, so REST and gRPC answer alike.

use std::collections::BTreeMap;

use switchyard_shared::config::{Action, Backend, Config, ContentSource, Rule};
use switchyard_shared::proto;

use crate::alerts::ActiveAlert;
use crate::error::ServiceError;
use crate::events::Event;
use crate::metrics::TrafficSummary;
use crate::service::{
    CacheClearView, CacheStatsReport, CacheStatsView, ChangeOutcome, Explanation, HealthView,
    Named, SampleRequest, SourceView, StatusView,
};
use crate::store::{AuditEntry, HistoryEntry};

/// `0` means "unconditional" (proto3 has no absent scalar without `optional`).
pub fn if_version(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

pub fn position(p: Option<u32>) -> Option<usize> {
    p.map(|p| p as usize)
}

/// Counts are `usize` in the service and `uint32` on the wire.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A named config item and its message. Items convert by wrapping them in
/// a one-item config, so the shared crate's (round-trip tested) config
/// conversion stays the only one.
pub trait ProtoItem: Named {
    type Proto: Send + 'static;
    fn from_proto(p: Self::Proto) -> Result<Self, ServiceError>;
    fn to_proto(&self) -> Self::Proto;
}

fn unwrap_item<T: Named>(wrapped: proto::Config) -> Result<T, ServiceError> {
    let mut config =
        Config::try_from(wrapped).map_err(|e| ServiceError::bad_request(e.to_string()))?;
    T::list(&mut config)
        .pop()
        .ok_or_else(|| ServiceError::bad_request(format!("the {} is required", T::KIND)))
}

impl ProtoItem for Rule {
    type Proto = proto::Rule;
    fn from_proto(p: proto::Rule) -> Result<Self, ServiceError> {
        unwrap_item(proto::Config {
            rules: vec![p],
            ..proto::Config::default()
        })
    }
    fn to_proto(&self) -> proto::Rule {
        let c = Config {
            rules: vec![self.clone()],
            ..Config::default()
        };
        proto::Config::from(&c).rules.pop().unwrap_or_default()
    }
}

impl ProtoItem for Backend {
    type Proto = proto::Backend;
    fn from_proto(p: proto::Backend) -> Result<Self, ServiceError> {
        unwrap_item(proto::Config {
            backends: vec![p],
            ..proto::Config::default()
        })
    }
    fn to_proto(&self) -> proto::Backend {
        let c = Config {
            backends: vec![self.clone()],
            ..Config::default()
        };
        proto::Config::from(&c).backends.pop().unwrap_or_default()
    }
}

impl ProtoItem for ContentSource {
    type Proto = proto::ContentSource;
    fn from_proto(p: proto::ContentSource) -> Result<Self, ServiceError> {
        unwrap_item(proto::Config {
            content_sources: vec![p],
            ..proto::Config::default()
        })
    }
    fn to_proto(&self) -> proto::ContentSource {
        let c = Config {
            content_sources: vec![self.clone()],
            ..Config::default()
        };
        proto::Config::from(&c)
            .content_sources
            .pop()
            .unwrap_or_default()
    }
}

/// A required item field of a request.
pub fn required<T: ProtoItem>(p: Option<T::Proto>) -> Result<T, ServiceError> {
    let p = p.ok_or_else(|| ServiceError::bad_request(format!("the {} is required", T::KIND)))?;
    T::from_proto(p)
}

pub fn config_from(c: Option<proto::Config>) -> Result<Config, ServiceError> {
    let c = c.ok_or_else(|| ServiceError::bad_request("config is required"))?;
    Config::try_from(c).map_err(|e| ServiceError::bad_request(e.to_string()))
}

pub fn change(o: ChangeOutcome) -> proto::ChangeResult {
    proto::ChangeResult {
        version: o.version,
        hash: o.hash,
        changed: o.changed,
        summary: o.summary,
    }
}

/// The REST body of `POST /api/rules/{name}/test`, from its message.
pub fn sample(r: proto::TestRuleRequest) -> (String, SampleRequest) {
    let method = if r.method.is_empty() {
        "GET".to_owned()
    } else {
        r.method
    };
    let sample = SampleRequest {
        method,
        host: r.host,
        path: r.path,
        headers: r.headers.into_iter().collect::<BTreeMap<_, _>>(),
    };
    (r.name, sample)
}

fn action(a: Action) -> proto::RuleAction {
    use proto::rule_action::Kind;
    let kind = match a {
        Action::Forward(f) => Kind::Forward(proto::ForwardAction {
            backend: f.backend,
            strip_prefix: f.strip_prefix,
            add_prefix: f.add_prefix,
        }),
        Action::Replace(r) => Kind::Replace(proto::ReplaceAction {
            source: r.source,
            status: u32::from(r.status),
            headers: r.headers.into_iter().collect(),
        }),
    };
    proto::RuleAction { kind: Some(kind) }
}

pub fn explanation(e: Explanation) -> proto::RuleExplanation {
    proto::RuleExplanation {
        version: e.version,
        rule: e.rule,
        matched: e.matched,
        failed_condition: e.failed_condition,
        winning_rule: e.winning_rule,
        winning_position: e.winning_position.map(count),
        action: e.action.map(action),
    }
}

pub fn history_entry(h: &HistoryEntry) -> proto::HistoryEntry {
    proto::HistoryEntry {
        version: h.version,
        hash: h.hash.clone(),
        timestamp_unix_ms: h.timestamp_unix_ms,
        actor: h.actor.clone(),
        summary: h.summary.clone(),
    }
}

pub fn audit_entry(a: AuditEntry) -> proto::AuditEntry {
    proto::AuditEntry {
        id: a.id,
        timestamp_unix_ms: a.timestamp_unix_ms,
        actor: a.actor,
        action: a.action,
        from_version: a.from_version,
        to_version: a.to_version,
        summary: a.summary,
    }
}

pub fn source_info(s: SourceView) -> proto::ContentSourceInfo {
    proto::ContentSourceInfo {
        name: s.name,
        kind: s.kind.to_owned(),
        content_type: s.content_type,
        file: s.file,
        sha256: s.sha256,
        size: s.size,
    }
}

pub fn cache_cleared(c: CacheClearView) -> proto::ClearCacheResponse {
    proto::ClearCacheResponse {
        source: c.source,
        nodes_total: count(c.nodes_total),
        nodes_confirmed: count(c.nodes_confirmed),
        nodes: c
            .nodes
            .into_iter()
            .map(|n| proto::NodeConfirmation {
                node_id: n.node_id,
                confirmed: n.confirmed,
                ok: n.ok,
                error: n.error,
                cleared_entries: n.cleared_entries,
            })
            .collect(),
    }
}

fn source_stats(c: CacheStatsView) -> proto::SourceCacheStats {
    proto::SourceCacheStats {
        source: c.source,
        entries: c.entries,
        bytes: c.bytes,
        hits: c.hits,
        misses: c.misses,
        stale_served: c.stale_served,
        fetch_errors: c.fetch_errors,
    }
}

pub fn cache_stats(r: CacheStatsReport) -> proto::CacheStatsResponse {
    proto::CacheStatsResponse {
        nodes: r
            .nodes
            .into_iter()
            .map(|n| proto::NodeCacheStats {
                node_id: n.node_id,
                reported_at: n.reported_at,
                caches: n.caches.into_iter().map(source_stats).collect(),
            })
            .collect(),
        totals: r.totals.into_iter().map(source_stats).collect(),
    }
}

fn traffic(t: TrafficSummary) -> proto::TrafficSummary {
    proto::TrafficSummary {
        request_count: t.request_count,
        error_count: t.error_count,
        error_rate: t.error_rate,
        avg_response_time_ms: t.avg_response_time,
        p95_ms: t.p95,
        requests_per_second: t.requests_per_second,
        active_connections: t.active_connections,
        reporting_nodes: count(t.reporting_nodes),
    }
}

fn alert(a: ActiveAlert) -> proto::Alert {
    proto::Alert {
        alert: a.alert.to_owned(),
        subject_kind: a.subject_kind.to_owned(),
        subject: a.subject,
        value: a.value,
        threshold: a.threshold,
        window_seconds: a.window_seconds,
        since: a.since,
        message: a.message,
    }
}

pub fn status(s: StatusView) -> proto::StatusResponse {
    let c = s.counts;
    proto::StatusResponse {
        version: s.version,
        hash: s.hash,
        uptime_seconds: s.uptime_seconds,
        build: s.build.to_owned(),
        last_event_seq: s.last_event_seq,
        counts: Some(proto::StatusCounts {
            listeners: count(c.listeners),
            backends: count(c.backends),
            servers: count(c.servers),
            content_sources: count(c.content_sources),
            rules: count(c.rules),
            nodes: count(c.nodes),
            connected_nodes: count(c.connected_nodes),
            nodes_in_sync: count(c.nodes_in_sync),
        }),
        nodes: s
            .nodes
            .into_iter()
            .map(|n| proto::NodeBrief {
                node_id: n.node_id,
                connected: n.connected,
                acked_version: n.acked_version,
            })
            .collect(),
        traffic: Some(traffic(s.traffic)),
        alerts: s.alerts.into_iter().map(alert).collect(),
    }
}

pub fn health(h: HealthView) -> proto::HealthResponse {
    let c = h.components;
    let component = |status: &str, detail: Option<String>| proto::ComponentHealth {
        status: status.to_owned(),
        detail,
    };
    proto::HealthResponse {
        status: h.status.to_owned(),
        alerts: h.alerts.into_iter().map(alert).collect(),
        version: h.version,
        storage: Some(component(c.storage.status, c.storage.detail)),
        grpc: Some(component(c.grpc.status, c.grpc.detail)),
        file_watcher: Some(component(c.file_watcher.status, c.file_watcher.detail)),
        nodes: Some(proto::NodesHealth {
            status: c.nodes.status.to_owned(),
            connected: count(c.nodes.connected),
            total: count(c.nodes.total),
            in_sync: count(c.nodes.in_sync),
        }),
        traffic: Some(traffic(h.traffic)),
    }
}

/// JSON -> protobuf `Value`, for event data.
fn to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn to_struct(o: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: o.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

pub fn event(e: Event) -> proto::Event {
    let data = match e.data() {
        serde_json::Value::Object(o) => Some(to_struct(o)),
        serde_json::Value::Null => None,
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            Some(to_struct(m))
        }
    };
    proto::Event {
        r#type: e.kind,
        seq: e.seq,
        timestamp: e.timestamp,
        data,
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
