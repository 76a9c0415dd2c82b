//! The domain configuration model: what users write in YAML and send as JSON.
//!
//! Field names and shapes are the public contract; unknown fields are
//! rejected so typos fail loudly instead of being silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod extensions;
pub mod units;

pub use extensions::*;

/// For `skip_serializing_if`: leave defaults out of printed configs.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The whole configuration. Rules are ordered: the first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    /// Data-plane request limits and timeouts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
    /// Which addresses remote content sources may be fetched from.
    #[serde(default, skip_serializing_if = "is_default")]
    pub remote_content: RemotePolicy,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub content_sources: Vec<ContentSource>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// An address the data planes accept traffic on (unless a data plane is
/// started with explicit `--listen` addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    /// `host:port`, e.g. `0.0.0.0:8080`.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastRequests,
    Random,
    ConsistentHash,
}

/// A named group of upstream servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// The key for `consistent_hash` (default: the client IP).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_yaml_ng::with::singleton_map"
    )]
    pub hash_on: Option<HashOn>,
    pub servers: Vec<Server>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// The Host header sent upstream.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        with = "serde_yaml_ng::with::singleton_map"
    )]
    pub host_header: HostHeader,
    /// Protocol towards the servers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: UpstreamProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `host:port` of the upstream.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Per-backend timeouts, written humanely (`5s`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing the TCP connection to a server.
    #[serde(default = "Timeouts::default_connect", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub connect: Duration,
    /// From sending the request to receiving the response head.
    #[serde(default = "Timeouts::default_request", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub request: Duration,
    /// How long an unused pooled upstream connection is kept.
    #[serde(default = "Timeouts::default_idle", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub idle: Duration,
    /// Each try's limit when retries are on (default: `request`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub per_try: Option<Duration>,
}

impl Timeouts {
    fn default_connect() -> Duration {
        Duration::from_secs(2)
    }
    fn default_request() -> Duration {
        Duration::from_secs(30)
    }
    fn default_idle() -> Duration {
        Duration::from_secs(90)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Self::default_connect(),
            request: Self::default_request(),
            idle: Self::default_idle(),
            per_try: None,
        }
    }
}

/// Content a `replace` rule (or a fallback) answers with. Exactly one of
/// `file`, `inline` and `remote` is set (validation enforces it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContentSource {
    pub name: String,
    /// MIME type; when absent it is guessed from the file name, and inline
    /// content defaults to `text/plain; charset=utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Path relative to the control plane's content root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The body itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// Fetched by the data planes from a URL, cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSource>,
    /// Another source to answer with when this one fails (remote errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The validated view of a content source's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind<'a> {
    File(&'a str),
    Inline(&'a str),
    Remote(&'a RemoteSource),
}

impl ContentSource {
    /// The kind, or `None` when the source sets zero or several kinds.
    pub fn kind(&self) -> Option<ContentKind<'_>> {
        match (&self.file, &self.inline, &self.remote) {
            (Some(path), None, None) => Some(ContentKind::File(path)),
            (None, Some(body), None) => Some(ContentKind::Inline(body)),
            (None, None, Some(remote)) => Some(ContentKind::Remote(remote)),
            _ => None,
        }
    }

    /// The content type to answer with.
    pub fn effective_content_type(&self) -> String {
        if let Some(ct) = &self.content_type {
            return ct.clone();
        }
        match self.kind() {
            Some(ContentKind::File(path)) => guess_from_path(path),
            Some(ContentKind::Remote(r)) => {
                guess_from_path(r.url.split(['?', '#']).next().unwrap_or(""))
            }
            _ => "text/plain; charset=utf-8".to_owned(),
        }
    }
}

fn guess_from_path(path: &str) -> String {
    mime_guess::from_path(path)
        .first()
        .map(|m| with_utf8_charset(m.essence_str()))
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

fn with_utf8_charset(essence: &str) -> String {
    if essence.starts_with("text/") || essence == "application/javascript" {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

/// One routing rule: a match and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RuleMatch,
    /// `{ forward: {...} }` or `{ replace: {...} }`, in YAML as in JSON.
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub action: Action,
    /// Content served when forwarding fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Header edits on the request sent upstream.
    #[serde(default, skip_serializing_if = "is_default")]
    pub request_headers: HeaderEdits,
    /// Header edits on the response sent to the client.
    #[serde(default, skip_serializing_if = "is_default")]
    pub response_headers: HeaderEdits,
    /// Find/replace on proxied response bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_body: Option<BodyRewrite>,
}

/// All present conditions must hold. An empty match matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// Exact hosts (`api.example.com`) or wildcards (`*.example.com`,
    /// which matches any subdomain but not the apex). Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Methods (case-insensitive in YAML, upper-cased when compiled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header name -> exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// The path condition, once validation has ensured at most one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch<'a> {
    Any,
    Prefix(&'a str),
    Exact(&'a str),
    Regex(&'a str),
}

impl RuleMatch {
    /// The path condition; `None` when more than one is set.
    pub fn path(&self) -> Option<PathMatch<'_>> {
        match (&self.path_prefix, &self.path_exact, &self.path_regex) {
            (None, None, None) => Some(PathMatch::Any),
            (Some(p), None, None) => Some(PathMatch::Prefix(p)),
            (None, Some(p), None) => Some(PathMatch::Exact(p)),
            (None, None, Some(p)) => Some(PathMatch::Regex(p)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Forward(ForwardAction),
    Replace(ReplaceAction),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForwardAction {
    pub backend: String,
    /// Removed from the start of the path before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Put in front of the (stripped) path; with `strip_prefix` this
    /// rewrites one prefix into another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplaceAction {
    pub source: String,
    #[serde(default = "default_status")]
    pub status: u16,
    /// Extra response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
}

impl Rule {
    /// A rule with no fallback, edits or rewrites.
    pub fn new(name: impl Into<String>, matcher: RuleMatch, action: Action) -> Self {
        Self {
            name: name.into(),
            matcher,
            action,
            fallback: None,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            rewrite_body: None,
        }
    }
}

impl ContentSource {
    pub fn inline(name: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            inline: Some(body.into()),
            ..Self::empty(name.into())
        }
    }

    pub fn file(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            file: Some(path.into()),
            ..Self::empty(name.into())
        }
    }

    fn empty(name: String) -> Self {
        Self {
            name,
            content_type: None,
            file: None,
            inline: None,
            remote: None,
            fallback: None,
        }
    }
}

impl Backend {
    /// A backend with defaults for everything but its servers.
    pub fn new(name: impl Into<String>, servers: Vec<Server>) -> Self {
        Self {
            name: name.into(),
            load_balancing: LoadBalancing::default(),
            hash_on: None,
            servers,
            timeouts: Timeouts::default(),
            health_check: None,
            outlier_detection: None,
            circuit_breaker: None,
            retries: None,
            host_header: HostHeader::default(),
            protocol: UpstreamProtocol::default(),
        }
    }
}
