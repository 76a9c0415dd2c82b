//! Conversions between the domain config and its typed proto form.
//! Round trips are property-tested in `convert/tests.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{
    Action, Backend, Config, ContentSource, ForwardAction, Listener, LoadBalancing, ReplaceAction,
    Rule, RuleMatch, Server, Timeouts,
};
use crate::proto;

/// A proto config that does not describe a valid domain config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: missing {what}")]
    Missing { path: String, what: &'static str },
    #[error("{path}: unknown load balancing value {value}")]
    UnknownLoadBalancing { path: String, value: i32 },
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
        .filter_map(|s| match &s.kind {
            Some(proto::content_source::Kind::File(f)) if !f.sha256.is_empty() => Some((
                s.name.clone(),
                BlobRef {
                    sha256: f.sha256.clone(),
                    size: f.size,
                },
            )),
            _ => None,
        })
        .collect()
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&Config> for proto::Config {
    fn from(c: &Config) -> Self {
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
        }
    }
}

fn backend_to_proto(b: &Backend) -> proto::Backend {
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
            connect_ms: millis(b.timeouts.connect),
            request_ms: millis(b.timeouts.request),
            idle_ms: millis(b.timeouts.idle),
        }),
    }
}

fn source_to_proto(s: &ContentSource) -> proto::ContentSource {
    use proto::content_source::Kind;
    let kind = match (&s.file, &s.inline) {
        (Some(path), _) => Some(Kind::File(proto::FileContent {
            path: path.clone(),
            sha256: String::new(),
            size: 0,
        })),
        (None, Some(body)) => Some(Kind::Inline(body.clone())),
        (None, None) => None,
    };
    proto::ContentSource {
        name: s.name.clone(),
        content_type: s.content_type.clone().unwrap_or_default(),
        kind,
    }
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
    }
}

impl TryFrom<proto::Config> for Config {
    type Error = ConvertError;

    fn try_from(c: proto::Config) -> Result<Self, Self::Error> {
        Ok(Config {
            listeners: c
                .listeners
                .into_iter()
                .map(|l| Listener {
                    name: l.name,
                    address: l.address,
                })
                .collect(),
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

fn backend_from_proto(i: usize, b: proto::Backend) -> Result<Backend, ConvertError> {
    let load_balancing = match proto::LoadBalancing::try_from(b.load_balancing) {
        Ok(proto::LoadBalancing::RoundRobin | proto::LoadBalancing::Unspecified) => {
            LoadBalancing::RoundRobin
        }
        Ok(proto::LoadBalancing::WeightedRoundRobin) => LoadBalancing::WeightedRoundRobin,
        Ok(proto::LoadBalancing::LeastRequests) => LoadBalancing::LeastRequests,
        Ok(proto::LoadBalancing::Random) => LoadBalancing::Random,
        Ok(proto::LoadBalancing::ConsistentHash) => LoadBalancing::ConsistentHash,
        Err(_) => {
            return Err(ConvertError::UnknownLoadBalancing {
                path: format!("backends[{i}].load_balancing"),
                value: b.load_balancing,
            })
        }
    };
    let timeouts = match b.timeouts {
        Some(t) => Timeouts {
            connect: Duration::from_millis(t.connect_ms),
            request: Duration::from_millis(t.request_ms),
            idle: Duration::from_millis(t.idle_ms),
        },
        None => Timeouts::default(),
    };
    Ok(Backend {
        name: b.name,
        load_balancing,
        servers: b
            .servers
            .into_iter()
            .map(|s| Server {
                address: s.address,
                weight: s.weight,
            })
            .collect(),
        timeouts,
    })
}

fn source_from_proto(i: usize, s: proto::ContentSource) -> Result<ContentSource, ConvertError> {
    use proto::content_source::Kind;
    let (file, inline) = match s.kind {
        Some(Kind::File(f)) => (Some(f.path), None),
        Some(Kind::Inline(body)) => (None, Some(body)),
        None => {
            return Err(ConvertError::Missing {
                path: format!("content_sources[{i}]"),
                what: "file or inline content",
            })
        }
    };
    Ok(ContentSource {
        name: s.name,
        content_type: Some(s.content_type).filter(|c| !c.is_empty()),
        file,
        inline,
    })
}

fn rule_from_proto(i: usize, r: proto::Rule) -> Result<Rule, ConvertError> {
    use proto::rule_match::Path;
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
        }),
        Some(proto::rule::Action::Replace(rep)) => Action::Replace(ReplaceAction {
            source: rep.source,
            status: u16::try_from(rep.status).map_err(|_| ConvertError::StatusOutOfRange {
                path: format!("rules[{i}].action.replace.status"),
                value: rep.status,
            })?,
            headers: rep.headers.into_iter().collect(),
        }),
        None => {
            return Err(ConvertError::Missing {
                path: format!("rules[{i}].action"),
                what: "action",
            })
        }
    };
    Ok(Rule {
        name: r.name,
        matcher,
        action,
    })
}

#[cfg(test)]
mod tests;
