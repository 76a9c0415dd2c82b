//! Conversions between the domain config and its typed proto form.
//! Round trips are property-tested in `convert/tests.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{
    Action, Backend, BodyRewrite, CircuitBreaker, Config, ContentSource, Fallback, ForwardAction,
    HashOn, HeaderEdits, HealthCheck, HostHeader, Limits, Listener, LoadBalancing,
    OutlierDetection, RemotePolicy, RemoteSource, ReplaceAction, Replacement, RetryOn, RetryPolicy,
    Rule, RuleMatch, Server, Timeouts, UpstreamProtocol,
};
use crate::proto;

/// A proto config that does not describe a valid domain config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: missing {what}")]
    Missing { path: String, what: &'static str },
    #[error("{path}: unknown enum value {value}")]
    UnknownEnum { path: String, value: i32 },
    #[error("{path}: status {value} is out of range")]
    StatusOutOfRange { path: String, value: u32 },
}

/// A file blob a snapshot refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

/// The file blobs named by a snapshot's config, by content source name.
pub fn file_blobs(config: &proto::Config) -> BTreeMap<String, BlobRef> {
    config
        .content_sources
        .iter()
        .filter_map(|s| Some((s.name.clone(), blob_ref(s)?)))
        .collect()
}

/// The blob a file content source refers to (set by the control plane).
pub fn blob_ref(source: &proto::ContentSource) -> Option<BlobRef> {
    match &source.kind {
        Some(proto::content_source::Kind::File(f)) if !f.sha256.is_empty() => Some(BlobRef {
            sha256: f.sha256.clone(),
            size: f.size,
        }),
        _ => None,
    }
}

/// Fills in the blob digest and size of every file source of `config`
/// that `blobs` knows (the wire form carries them; the domain does not).
pub fn set_file_blobs(config: &mut proto::Config, blobs: &BTreeMap<String, BlobRef>) {
    for source in &mut config.content_sources {
        if let Some(proto::content_source::Kind::File(f)) = &mut source.kind {
            if let Some(blob) = blobs.get(&source.name) {
                f.sha256.clone_from(&blob.sha256);
                f.size = blob.size;
            }
        }
    }
}

fn lb_to_proto(lb: LoadBalancing) -> proto::LoadBalancing {
    match lb {
        LoadBalancing::RoundRobin => proto::LoadBalancing::RoundRobin,
        LoadBalancing::WeightedRoundRobin => proto::LoadBalancing::WeightedRoundRobin,
        LoadBalancing::LeastRequests => proto::LoadBalancing::LeastRequests,
        LoadBalancing::Random => proto::LoadBalancing::Random,
        LoadBalancing::ConsistentHash => proto::LoadBalancing::ConsistentHash,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn dur(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn statuses_to_proto(s: &[u16]) -> Vec<u32> {
    s.iter().map(|&x| u32::from(x)).collect()
}

fn statuses_from_proto(path: impl Fn() -> String, s: Vec<u32>) -> Result<Vec<u16>, ConvertError> {
    s.into_iter()
        .map(|x| {
            u16::try_from(x).map_err(|_| ConvertError::StatusOutOfRange {
                path: path(),
                value: x,
            })
        })
        .collect()
}

fn status_from_proto(path: impl Fn() -> String, x: u32) -> Result<u16, ConvertError> {
    u16::try_from(x).map_err(|_| ConvertError::StatusOutOfRange {
        path: path(),
        value: x,
    })
}

impl From<&Config> for proto::Config {
    fn from(c: &Config) -> Self {
        let l = &c.limits;
        proto::Config {
            listeners: c
                .listeners
                .iter()
                .map(|l| proto::Listener {
                    name: l.name.clone(),
                    address: l.address.clone(),
                })
                .collect(),
            backends: c.backends.iter().map(backend_to_proto).collect(),
            content_sources: c.content_sources.iter().map(source_to_proto).collect(),
            rules: c.rules.iter().map(rule_to_proto).collect(),
            limits: Some(proto::Limits {
                header_read_timeout_ms: ms(l.header_read_timeout),
                max_header_bytes: l.max_header_bytes,
                max_body_bytes: l.max_body_bytes,
                request_timeout_ms: l.request_timeout.map(ms),
                client_idle_timeout_ms: ms(l.client_idle_timeout),
            }),
            remote_content: Some(proto::RemotePolicy {
                allow_loopback: c.remote_content.allow_loopback,
                allow_private: c.remote_content.allow_private,
            }),
        }
    }
}

fn backend_to_proto(b: &Backend) -> proto::Backend {
    use proto::hash_on::Key;
    use proto::host_header::Mode;
    proto::Backend {
        name: b.name.clone(),
        load_balancing: lb_to_proto(b.load_balancing) as i32,
        servers: b
            .servers
            .iter()
            .map(|s| proto::Server {
                address: s.address.clone(),
                weight: s.weight,
            })
            .collect(),
        timeouts: Some(proto::Timeouts {
            connect_ms: ms(b.timeouts.connect),
            request_ms: ms(b.timeouts.request),
            idle_ms: ms(b.timeouts.idle),
            per_try_ms: b.timeouts.per_try.map(ms),
        }),
        hash_on: b.hash_on.as_ref().map(|h| proto::HashOn {
            key: Some(match h {
                HashOn::Header(n) => Key::Header(n.clone()),
                HashOn::Cookie(n) => Key::Cookie(n.clone()),
                HashOn::ClientIp => Key::ClientIp(true),
            }),
        }),
        health_check: b.health_check.as_ref().map(|h| proto::HealthCheck {
            path: h.path.clone(),
            interval_ms: ms(h.interval),
            timeout_ms: ms(h.timeout),
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            expected_statuses: statuses_to_proto(&h.expected_statuses),
        }),
        outlier_detection: b
            .outlier_detection
            .as_ref()
            .map(|o| proto::OutlierDetection {
                consecutive_failures: o.consecutive_failures,
                base_ejection_ms: ms(o.base_ejection),
                max_ejection_ms: ms(o.max_ejection),
            }),
        circuit_breaker: b.circuit_breaker.as_ref().map(|c| proto::CircuitBreaker {
            failure_threshold: c.failure_threshold,
            open_duration_ms: ms(c.open_duration),
            half_open_probes: c.half_open_probes,
        }),
        retries: b.retries.as_ref().map(|r| proto::RetryPolicy {
            max_retries: r.max_retries,
            backoff_base_ms: ms(r.backoff_base),
            backoff_max_ms: ms(r.backoff_max),
            retry_on: r
                .retry_on
                .iter()
                .map(|o| match o {
                    RetryOn::ConnectError => proto::RetryOn::ConnectError as i32,
                    RetryOn::Timeout => proto::RetryOn::Timeout as i32,
                    RetryOn::Reset => proto::RetryOn::Reset as i32,
                })
                .collect(),
            retry_statuses: statuses_to_proto(&r.retry_statuses),
            retry_non_idempotent: r.retry_non_idempotent,
            budget_percent: r.budget_percent,
            min_retries_per_second: r.min_retries_per_second,
            buffer_body: r.buffer_body,
        }),
        host_header: Some(proto::HostHeader {
            mode: Some(match &b.host_header {
                HostHeader::Preserve => Mode::Preserve(true),
                HostHeader::Server => Mode::Server(true),
                HostHeader::Custom(h) => Mode::Custom(h.clone()),
            }),
        }),
        protocol: match b.protocol {
            UpstreamProtocol::Http1 => proto::UpstreamProtocol::Http1 as i32,
            UpstreamProtocol::Http2 => proto::UpstreamProtocol::Http2 as i32,
        },
    }
}

fn source_to_proto(s: &ContentSource) -> proto::ContentSource {
    use proto::content_source::Kind;
    let kind = if let Some(path) = &s.file {
        Some(Kind::File(proto::FileContent {
            path: path.clone(),
            sha256: String::new(),
            size: 0,
        }))
    } else if let Some(body) = &s.inline {
        Some(Kind::Inline(body.clone()))
    } else {
        s.remote.as_ref().map(|r| {
            Kind::Remote(proto::RemoteSource {
                url: r.url.clone(),
                ttl_ms: ms(r.ttl),
                timeout_ms: ms(r.timeout),
                max_size: r.max_size,
                stale_if_error_ms: ms(r.stale_if_error),
                max_redirects: r.max_redirects,
            })
        })
    };
    proto::ContentSource {
        name: s.name.clone(),
        content_type: s.content_type.clone().unwrap_or_default(),
        kind,
        fallback: s.fallback.clone(),
    }
}

fn edits_to_proto(e: &HeaderEdits) -> Option<proto::HeaderEdits> {
    (*e != HeaderEdits::default()).then(|| proto::HeaderEdits {
        set: e.set.clone().into_iter().collect(),
        remove: e.remove.clone(),
    })
}

fn rule_to_proto(r: &Rule) -> proto::Rule {
    use proto::rule_match::Path;
    let m = &r.matcher;
    let path = m
        .path_prefix
        .clone()
        .map(Path::PathPrefix)
        .or_else(|| m.path_exact.clone().map(Path::PathExact))
        .or_else(|| m.path_regex.clone().map(Path::PathRegex));
    let action = match &r.action {
        Action::Forward(f) => proto::rule::Action::Forward(proto::ForwardAction {
            backend: f.backend.clone(),
            strip_prefix: f.strip_prefix.clone(),
            add_prefix: f.add_prefix.clone(),
        }),
        Action::Replace(rep) => proto::rule::Action::Replace(proto::ReplaceAction {
            source: rep.source.clone(),
            status: u32::from(rep.status),
            headers: rep.headers.clone().into_iter().collect(),
        }),
    };
    proto::Rule {
        name: r.name.clone(),
        r#match: Some(proto::RuleMatch {
            hosts: m.hosts.clone(),
            path,
            methods: m.methods.clone(),
            headers: m.headers.clone().into_iter().collect(),
        }),
        action: Some(action),
        fallback: r.fallback.as_ref().map(|f| proto::Fallback {
            source: f.source.clone(),
            statuses: statuses_to_proto(&f.statuses),
            status: u32::from(f.status),
        }),
        request_headers: edits_to_proto(&r.request_headers),
        response_headers: edits_to_proto(&r.response_headers),
        rewrite_body: r.rewrite_body.as_ref().map(|b| proto::BodyRewrite {
            content_types: b.content_types.clone(),
            replacements: b
                .replacements
                .iter()
                .map(|x| proto::Replacement {
                    find: x.find.clone(),
                    replace: x.replace.clone(),
                    regex: x.regex,
                })
                .collect(),
        }),
    }
}

impl TryFrom<proto::Config> for Config {
    type Error = ConvertError;

    fn try_from(c: proto::Config) -> Result<Self, Self::Error> {
        Ok(Config {
            listeners: c.listeners.into_iter().map(listener_from_proto).collect(),
            limits: limits_from_proto(c.limits),
            remote_content: remote_from_proto(c.remote_content),
            backends: c
                .backends
                .into_iter()
                .enumerate()
                .map(|(i, b)| backend_from_proto(i, b))
                .collect::<Result<_, _>>()?,
            content_sources: c
                .content_sources
                .into_iter()
                .enumerate()
                .map(|(i, s)| source_from_proto(i, s))
                .collect::<Result<_, _>>()?,
            rules: c
                .rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| rule_from_proto(i, r))
                .collect::<Result<_, _>>()?,
        })
    }
}

pub(crate) fn listener_from_proto(l: proto::Listener) -> Listener {
    Listener {
        name: l.name,
        address: l.address,
    }
}

pub(crate) fn limits_from_proto(l: Option<proto::Limits>) -> Limits {
    match l {
        Some(l) => Limits {
            header_read_timeout: dur(l.header_read_timeout_ms),
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
            request_timeout: l.request_timeout_ms.map(dur),
            client_idle_timeout: dur(l.client_idle_timeout_ms),
        },
        None => Limits::default(),
    }
}

pub(crate) fn remote_from_proto(p: Option<proto::RemotePolicy>) -> RemotePolicy {
    p.map(|p| RemotePolicy {
        allow_loopback: p.allow_loopback,
        allow_private: p.allow_private,
    })
    .unwrap_or_default()
}

pub(crate) fn backend_from_proto(i: usize, b: proto::Backend) -> Result<Backend, ConvertError> {
    use proto::hash_on::Key;
    use proto::host_header::Mode;
    let at = |field: &str| format!("backends[{i}].{field}");
    let load_balancing = match proto::LoadBalancing::try_from(b.load_balancing) {
        Ok(proto::LoadBalancing::RoundRobin | proto::LoadBalancing::Unspecified) => {
            LoadBalancing::RoundRobin
        }
        Ok(proto::LoadBalancing::WeightedRoundRobin) => LoadBalancing::WeightedRoundRobin,
        Ok(proto::LoadBalancing::LeastRequests) => LoadBalancing::LeastRequests,
        Ok(proto::LoadBalancing::Random) => LoadBalancing::Random,
        Ok(proto::LoadBalancing::ConsistentHash) => LoadBalancing::ConsistentHash,
        Err(_) => {
            return Err(ConvertError::UnknownEnum {
                path: at("load_balancing"),
                value: b.load_balancing,
            })
        }
    };
    let timeouts = match b.timeouts {
        Some(t) => Timeouts {
            connect: dur(t.connect_ms),
            request: dur(t.request_ms),
            idle: dur(t.idle_ms),
            per_try: t.per_try_ms.map(dur),
        },
        None => Timeouts::default(),
    };
    let hash_on = match b.hash_on.and_then(|h| h.key) {
        Some(Key::Header(n)) => Some(HashOn::Header(n)),
        Some(Key::Cookie(n)) => Some(HashOn::Cookie(n)),
        Some(Key::ClientIp(_)) => Some(HashOn::ClientIp),
        None => None,
    };
    let health_check = match b.health_check {
        Some(h) => Some(HealthCheck {
            path: h.path,
            interval: dur(h.interval_ms),
            timeout: dur(h.timeout_ms),
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            expected_statuses: statuses_from_proto(
                || at("health_check.expected_statuses"),
                h.expected_statuses,
            )?,
        }),
        None => None,
    };
    let retries = match b.retries {
        Some(r) => Some(RetryPolicy {
            max_retries: r.max_retries,
            backoff_base: dur(r.backoff_base_ms),
            backoff_max: dur(r.backoff_max_ms),
            retry_on: r
                .retry_on
                .iter()
                .map(|&v| match proto::RetryOn::try_from(v) {
                    Ok(proto::RetryOn::ConnectError) => Ok(RetryOn::ConnectError),
                    Ok(proto::RetryOn::Timeout) => Ok(RetryOn::Timeout),
                    Ok(proto::RetryOn::Reset) => Ok(RetryOn::Reset),
                    _ => Err(ConvertError::UnknownEnum {
                        path: at("retries.retry_on"),
                        value: v,
                    }),
                })
                .collect::<Result<_, _>>()?,
            retry_statuses: statuses_from_proto(|| at("retries.retry_statuses"), r.retry_statuses)?,
            retry_non_idempotent: r.retry_non_idempotent,
            budget_percent: r.budget_percent,
            min_retries_per_second: r.min_retries_per_second,
            buffer_body: r.buffer_body,
        }),
        None => None,
    };
    let host_header = match b.host_header.and_then(|h| h.mode) {
        Some(Mode::Server(_)) => HostHeader::Server,
        Some(Mode::Custom(h)) => HostHeader::Custom(h),
        Some(Mode::Preserve(_)) | None => HostHeader::Preserve,
    };
    let protocol = match proto::UpstreamProtocol::try_from(b.protocol) {
        Ok(proto::UpstreamProtocol::Http1) => UpstreamProtocol::Http1,
        Ok(proto::UpstreamProtocol::Http2) => UpstreamProtocol::Http2,
        Err(_) => {
            return Err(ConvertError::UnknownEnum {
                path: at("protocol"),
                value: b.protocol,
            })
        }
    };
    Ok(Backend {
        name: b.name,
        load_balancing,
        hash_on,
        servers: b
            .servers
            .into_iter()
            .map(|s| Server {
                address: s.address,
                weight: s.weight,
            })
            .collect(),
        timeouts,
        health_check,
        outlier_detection: b.outlier_detection.map(|o| OutlierDetection {
            consecutive_failures: o.consecutive_failures,
            base_ejection: dur(o.base_ejection_ms),
            max_ejection: dur(o.max_ejection_ms),
        }),
        circuit_breaker: b.circuit_breaker.map(|c| CircuitBreaker {
            failure_threshold: c.failure_threshold,
            open_duration: dur(c.open_duration_ms),
            half_open_probes: c.half_open_probes,
        }),
        retries,
        host_header,
        protocol,
    })
}

pub(crate) fn source_from_proto(
    i: usize,
    s: proto::ContentSource,
) -> Result<ContentSource, ConvertError> {
    use proto::content_source::Kind;
    let mut source = ContentSource {
        name: s.name,
        content_type: Some(s.content_type).filter(|c| !c.is_empty()),
        file: None,
        inline: None,
        remote: None,
        fallback: s.fallback,
    };
    match s.kind {
        Some(Kind::File(f)) => source.file = Some(f.path),
        Some(Kind::Inline(body)) => source.inline = Some(body),
        Some(Kind::Remote(r)) => {
            source.remote = Some(RemoteSource {
                url: r.url,
                ttl: dur(r.ttl_ms),
                timeout: dur(r.timeout_ms),
                max_size: r.max_size,
                stale_if_error: dur(r.stale_if_error_ms),
                max_redirects: r.max_redirects,
            })
        }
        None => {
            return Err(ConvertError::Missing {
                path: format!("content_sources[{i}]"),
                what: "file, inline or remote content",
            })
        }
    }
    Ok(source)
}

fn edits_from_proto(e: Option<proto::HeaderEdits>) -> HeaderEdits {
    e.map(|e| HeaderEdits {
        set: e.set.into_iter().collect(),
        remove: e.remove,
    })
    .unwrap_or_default()
}

pub(crate) fn rule_from_proto(i: usize, r: proto::Rule) -> Result<Rule, ConvertError> {
    use proto::rule_match::Path;
    let at = |field: &str| format!("rules[{i}].{field}");
    let m = r.r#match.unwrap_or_default();
    let mut matcher = RuleMatch {
        hosts: m.hosts,
        methods: m.methods,
        headers: m.headers.into_iter().collect(),
        ..RuleMatch::default()
    };
    match m.path {
        Some(Path::PathPrefix(p)) => matcher.path_prefix = Some(p),
        Some(Path::PathExact(p)) => matcher.path_exact = Some(p),
        Some(Path::PathRegex(p)) => matcher.path_regex = Some(p),
        None => {}
    }
    let action = match r.action {
        Some(proto::rule::Action::Forward(f)) => Action::Forward(ForwardAction {
            backend: f.backend,
            strip_prefix: f.strip_prefix,
            add_prefix: f.add_prefix,
        }),
        Some(proto::rule::Action::Replace(rep)) => Action::Replace(ReplaceAction {
            source: rep.source,
            status: status_from_proto(|| at("action.replace.status"), rep.status)?,
            headers: rep.headers.into_iter().collect(),
        }),
        None => {
            return Err(ConvertError::Missing {
                path: at("action"),
                what: "action",
            })
        }
    };
    let fallback = match r.fallback {
        Some(f) => Some(Fallback {
            source: f.source,
            statuses: statuses_from_proto(|| at("fallback.statuses"), f.statuses)?,
            status: status_from_proto(|| at("fallback.status"), f.status)?,
        }),
        None => None,
    };
    Ok(Rule {
        name: r.name,
        matcher,
        action,
        fallback,
        request_headers: edits_from_proto(r.request_headers),
        response_headers: edits_from_proto(r.response_headers),
        rewrite_body: r.rewrite_body.map(|b| BodyRewrite {
            content_types: b.content_types,
            replacements: b
                .replacements
                .into_iter()
                .map(|x| Replacement {
                    find: x.find,
                    replace: x.replace,
                    regex: x.regex,
                })
                .collect(),
        }),
    })
}

#[cfg(test)]
mod tests;
