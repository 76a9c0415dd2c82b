//! Config types for traffic management (health, breakers, retries, load
//! balancing keys), header and body edits, fallbacks, remote content and
//! data-plane limits. Every block has defaults a production proxy would
//! pick, so a config only names what it changes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units;

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    Header(String),
    Cookie(String),
    ClientIp,
}

/// Active health checks: a server is marked unhealthy after
/// `unhealthy_threshold` failed probes and healthy again after
/// `healthy_threshold` good ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "HealthCheck::default_path")]
    pub path: String,
    #[serde(default = "HealthCheck::default_interval", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub interval: Duration,
    #[serde(default = "HealthCheck::default_timeout", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub timeout: Duration,
    #[serde(default = "two")]
    pub healthy_threshold: u32,
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
    /// Statuses that count as healthy; empty means any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u16>,
}

impl HealthCheck {
    fn default_path() -> String {
        "/".to_owned()
    }
    fn default_interval() -> Duration {
        Duration::from_secs(5)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(1)
    }
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn five() -> u32 {
    5
}

/// Passive outlier detection: consecutive failures eject a server for a
/// period that doubles with each ejection, up to `max_ejection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(default = "five")]
    pub consecutive_failures: u32,
    #[serde(default = "OutlierDetection::default_base", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub base_ejection: Duration,
    #[serde(default = "OutlierDetection::default_max", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub max_ejection: Duration,
}

impl OutlierDetection {
    fn default_base() -> Duration {
        Duration::from_secs(10)
    }
    fn default_max() -> Duration {
        Duration::from_secs(300)
    }
}

/// A circuit breaker per upstream server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker.
    #[serde(default = "five")]
    pub failure_threshold: u32,
    /// How long it stays open before letting probes through.
    #[serde(default = "CircuitBreaker::default_open", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub open_duration: Duration,
    /// Requests let through while half-open; all must succeed to close.
    #[serde(default = "one")]
    pub half_open_probes: u32,
}

impl CircuitBreaker {
    fn default_open() -> Duration {
        Duration::from_secs(30)
    }
}

/// Failures a retry may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The TCP connection could not be made (always safe to retry).
    ConnectError,
    /// The try exceeded `timeouts.per_try`.
    Timeout,
    /// The connection broke before a response head arrived.
    Reset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try.
    #[serde(default = "two")]
    pub max_retries: u32,
    /// Full-jitter exponential backoff: random(0, min(max, base * 2^n)).
    #[serde(default = "RetryPolicy::default_base", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub backoff_base: Duration,
    #[serde(default = "RetryPolicy::default_max", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub backoff_max: Duration,
    #[serde(default = "RetryPolicy::default_on")]
    pub retry_on: Vec<RetryOn>,
    /// Response statuses that are retried (e.g. 502, 503).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_statuses: Vec<u16>,
    /// Also retry methods that are not idempotent (POST, PATCH).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_non_idempotent: bool,
    /// Retries may add at most this share of extra requests (per backend).
    #[serde(default = "RetryPolicy::default_budget")]
    pub budget_percent: u32,
    /// Retries always allowed per second regardless of the budget, so a
    /// quiet backend can still retry.
    #[serde(default = "RetryPolicy::default_min_per_second")]
    pub min_retries_per_second: u32,
    /// Request bodies up to this size are buffered so they can be replayed;
    /// larger (streamed) bodies are not retried.
    #[serde(default = "RetryPolicy::default_buffer", with = "units")]
    #[cfg_attr(feature = "openapi", schema(value_type = units::ByteSize))]
    pub buffer_body: u64,
}

impl RetryPolicy {
    fn default_base() -> Duration {
        Duration::from_millis(25)
    }
    fn default_max() -> Duration {
        Duration::from_secs(1)
    }
    fn default_on() -> Vec<RetryOn> {
        vec![RetryOn::ConnectError, RetryOn::Timeout, RetryOn::Reset]
    }
    fn default_budget() -> u32 {
        20
    }
    fn default_min_per_second() -> u32 {
        10
    }
    fn default_buffer() -> u64 {
        64 * 1024
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base: Self::default_base(),
            backoff_max: Self::default_max(),
            retry_on: Self::default_on(),
            retry_statuses: Vec::new(),
            retry_non_idempotent: false,
            budget_percent: Self::default_budget(),
            min_retries_per_second: Self::default_min_per_second(),
            buffer_body: Self::default_buffer(),
        }
    }
}

/// The Host header sent to a backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The client's Host, unchanged.
    #[default]
    Preserve,
    /// The chosen server's `host:port`.
    Server,
    /// A fixed value.
    Custom(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), e.g. for gRPC backends.
    Http2,
}

/// Content served instead of an upstream failure: no healthy server, an
/// open breaker, a timeout, a connection error, or one of `statuses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub source: String,
    /// Upstream statuses that are replaced by the fallback too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// Status of the fallback response (default 503).
    #[serde(default = "Fallback::default_status")]
    pub status: u16,
}

impl Fallback {
    fn default_status() -> u16 {
        503
    }
}

/// Header edits: `remove` first, then `set` (replacing any value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Find/replace on proxied response bodies of the given content types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BodyRewrite {
    /// MIME essences (`text/html`); the default covers common text types.
    #[serde(default = "BodyRewrite::default_types")]
    pub content_types: Vec<String>,
    pub replacements: Vec<Replacement>,
}

impl BodyRewrite {
    fn default_types() -> Vec<String> {
        [
            "text/html",
            "text/plain",
            "text/css",
            "application/javascript",
            "application/json",
        ]
        .map(String::from)
        .to_vec()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    pub find: String,
    pub replace: String,
    /// `find` is a regex (`replace` may use `$1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regex: bool,
}

/// A content source fetched by the data planes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoteSource {
    /// `http://` or `https://` URL.
    pub url: String,
    /// How long a fetched body is fresh.
    #[serde(default = "RemoteSource::default_ttl", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub ttl: Duration,
    #[serde(default = "RemoteSource::default_timeout", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub timeout: Duration,
    /// Larger bodies are refused.
    #[serde(default = "RemoteSource::default_max_size", with = "units")]
    #[cfg_attr(feature = "openapi", schema(value_type = units::ByteSize))]
    pub max_size: u64,
    /// A stale body may still be served this long after expiry while the
    /// origin fails.
    #[serde(default = "RemoteSource::default_stale", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub stale_if_error: Duration,
    #[serde(default = "three")]
    pub max_redirects: u32,
}

impl RemoteSource {
    fn default_ttl() -> Duration {
        Duration::from_secs(60)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_max_size() -> u64 {
        10 * 1024 * 1024
    }
    fn default_stale() -> Duration {
        Duration::from_secs(300)
    }
}

/// Address policy for remote content: loopback, private and link-local
/// targets are refused unless allowed here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemotePolicy {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_loopback: bool,
    /// Private (RFC 1918, ULA) and link-local addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
}

/// Data-plane limits on what clients send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time allowed to receive a request head (slowloris) -> 408.
    #[serde(default = "Limits::default_header_read", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub header_read_timeout: Duration,
    /// Largest request head -> 431.
    #[serde(default = "Limits::default_max_header", with = "units")]
    #[cfg_attr(feature = "openapi", schema(value_type = units::ByteSize))]
    pub max_header_bytes: u64,
    /// Largest request body; 0 means unlimited -> 413.
    #[serde(default, with = "units")]
    #[cfg_attr(feature = "openapi", schema(value_type = units::ByteSize))]
    pub max_body_bytes: u64,
    /// Whole-request limit (all tries, to the response head) -> 504;
    /// absent means each backend's `timeouts.request` decides.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub request_timeout: Option<Duration>,
    /// Idle keep-alive client connections are closed after this.
    #[serde(default = "Limits::default_idle", with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s", pattern = r"^[0-9]{1,9}(ns|us|ms|s|m|h|d)( [0-9]{1,9}(ns|us|ms|s|m|h|d))*$"))]
    pub client_idle_timeout: Duration,
}

impl Limits {
    fn default_header_read() -> Duration {
        Duration::from_secs(10)
    }
    fn default_max_header() -> u64 {
        64 * 1024
    }
    fn default_idle() -> Duration {
        Duration::from_secs(60)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::default_header_read(),
            max_header_bytes: Self::default_max_header(),
            max_body_bytes: 0,
            request_timeout: None,
            client_idle_timeout: Self::default_idle(),
        }
    }
}
