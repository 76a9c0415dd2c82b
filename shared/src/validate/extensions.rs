//! Validation of the traffic-management, edit, fallback, remote-content
//! and limit blocks (see `config/extensions.rs`).

use std::collections::HashMap;

use rustc_hash::FxHashSet as HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderName, HeaderValue};

use super::{check_host_port, Collector, REGEX_SIZE_LIMIT};
use crate::config::{Backend, Config, ContentSource, HostHeader, LoadBalancing, Rule};

fn check_status(c: &mut Collector, at: String, s: u16) {
    if !(200..=599).contains(&s) {
        c.add(at, format!("{s} is not a final HTTP status (200-599)"));
    }
}

fn check_statuses(c: &mut Collector, at: &str, statuses: &[u16]) {
    for (i, &s) in statuses.iter().enumerate() {
        check_status(c, format!("{at}[{i}]"), s);
    }
}

pub(super) fn backend(c: &mut Collector, at: &str, b: &Backend) {
    if b.hash_on.is_some() && b.load_balancing != LoadBalancing::ConsistentHash {
        c.add(
            format!("{at}.hash_on"),
            "only used with `load_balancing: consistent_hash`",
        );
    }
    if let Some(crate::config::HashOn::Header(n) | crate::config::HashOn::Cookie(n)) = &b.hash_on {
        if n.is_empty() || HeaderName::from_bytes(n.as_bytes()).is_err() {
            c.add(
                format!("{at}.hash_on"),
                format!("`{n}` is not a valid name"),
            );
        }
    }
    if b.timeouts.per_try.is_some_and(|d| d.is_zero()) {
        c.add(
            format!("{at}.timeouts.per_try"),
            "must be greater than zero",
        );
    }
    if let Some(h) = &b.health_check {
        let at = format!("{at}.health_check");
        if !h.path.starts_with('/') {
            c.add(format!("{at}.path"), "must start with `/`");
        }
        if h.interval.is_zero() {
            c.add(format!("{at}.interval"), "must be greater than zero");
        }
        if h.timeout.is_zero() || h.timeout > h.interval {
            c.add(
                format!("{at}.timeout"),
                "must be greater than zero and at most `interval`",
            );
        }
        if h.healthy_threshold == 0 {
            c.add(format!("{at}.healthy_threshold"), "must be at least 1");
        }
        if h.unhealthy_threshold == 0 {
            c.add(format!("{at}.unhealthy_threshold"), "must be at least 1");
        }
        check_statuses(c, &format!("{at}.expected_statuses"), &h.expected_statuses);
    }
    if let Some(o) = &b.outlier_detection {
        let at = format!("{at}.outlier_detection");
        if o.consecutive_failures == 0 {
            c.add(format!("{at}.consecutive_failures"), "must be at least 1");
        }
        if o.base_ejection.is_zero() || o.base_ejection > o.max_ejection {
            c.add(
                format!("{at}.base_ejection"),
                "must be greater than zero and at most `max_ejection`",
            );
        }
    }
    if let Some(cb) = &b.circuit_breaker {
        let at = format!("{at}.circuit_breaker");
        if cb.failure_threshold == 0 {
            c.add(format!("{at}.failure_threshold"), "must be at least 1");
        }
        if cb.open_duration.is_zero() {
            c.add(format!("{at}.open_duration"), "must be greater than zero");
        }
        if cb.half_open_probes == 0 {
            c.add(format!("{at}.half_open_probes"), "must be at least 1");
        }
    }
    if let Some(r) = &b.retries {
        let at = format!("{at}.retries");
        if r.max_retries > 10 {
            c.add(format!("{at}.max_retries"), "at most 10");
        }
        if r.backoff_base.is_zero() || r.backoff_base > r.backoff_max {
            c.add(
                format!("{at}.backoff_base"),
                "must be greater than zero and at most `backoff_max`",
            );
        }
        if r.budget_percent > 100 {
            c.add(format!("{at}.budget_percent"), "must be between 0 and 100");
        }
        check_statuses(c, &format!("{at}.retry_statuses"), &r.retry_statuses);
    }
    if let HostHeader::Custom(h) = &b.host_header {
        let valid = HeaderValue::from_str(h).is_ok()
            && !h.is_empty()
            && (check_host_port(h).is_ok() || super::check_hostname(h).is_ok());
        if !valid {
            c.add(
                format!("{at}.host_header"),
                format!("`{h}` is not a host or host:port"),
            );
        }
    }
}

pub(super) fn source(c: &mut Collector, at: &str, s: &ContentSource, names: &HashSet<&str>) {
    if let Some(r) = &s.remote {
        let at = format!("{at}.remote");
        match url::Url::parse(&r.url) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => c.add(
                format!("{at}.url"),
                format!("`{}`: only http and https are allowed", r.url),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                c.add(format!("{at}.url"), format!("`{}` has no host", r.url))
            }
            Ok(_) => {}
            Err(e) => c.add(
                format!("{at}.url"),
                format!("`{}` is not a URL ({e})", r.url),
            ),
        }
        if r.ttl.is_zero() {
            c.add(format!("{at}.ttl"), "must be greater than zero");
        }
        if r.timeout.is_zero() {
            c.add(format!("{at}.timeout"), "must be greater than zero");
        }
        if r.max_size == 0 {
            c.add(format!("{at}.max_size"), "must be greater than zero");
        }
        if r.max_redirects > 10 {
            c.add(format!("{at}.max_redirects"), "at most 10");
        }
    }
    if let Some(f) = &s.fallback {
        if f == &s.name {
            c.add(
                format!("{at}.fallback"),
                "a source cannot fall back to itself",
            );
        } else if !names.contains(f.as_str()) {
            c.add(
                format!("{at}.fallback"),
                format!("unknown content source `{f}`"),
            );
        }
    }
}

/// Fallback chains between sources must end.
pub(super) fn source_cycles(c: &mut Collector, config: &Config) {
    let next: HashMap<&str, &str> = config
        .content_sources
        .iter()
        .filter_map(|s| s.fallback.as_deref().map(|f| (s.name.as_str(), f)))
        .collect();
    for (i, s) in config.content_sources.iter().enumerate() {
        if s.fallback.as_deref() == Some(s.name.as_str()) {
            continue; // reported by `source`
        }
        let mut seen = HashSet::from_iter([s.name.as_str()]);
        let mut at = s.name.as_str();
        while let Some(&n) = next.get(at) {
            if !seen.insert(n) {
                if n != s.name {
                    break; // reported for the source on the cycle
                }
                c.add(
                    format!("content_sources[{i}].fallback"),
                    format!("fallback chain from `{}` loops back to it", s.name),
                );
                break;
            }
            at = n;
        }
    }
}

fn header_edits(c: &mut Collector, at: &str, e: &crate::config::HeaderEdits) {
    for (name, value) in &e.set {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.add(
                format!("{at}.set.{name}"),
                format!("`{name}` is not a valid header name"),
            );
        } else if HeaderValue::from_str(value).is_err() {
            c.add(
                format!("{at}.set.{name}"),
                "value is not a valid header value",
            );
        }
    }
    for (i, name) in e.remove.iter().enumerate() {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.add(
                format!("{at}.remove[{i}]"),
                format!("`{name}` is not a valid header name"),
            );
        }
    }
}

pub(super) fn rule(c: &mut Collector, at: &str, r: &Rule, sources: &HashSet<&str>) {
    if let Some(f) = &r.fallback {
        if !sources.contains(f.source.as_str()) {
            c.add(
                format!("{at}.fallback.source"),
                format!("unknown content source `{}`", f.source),
            );
        }
        check_statuses(c, &format!("{at}.fallback.statuses"), &f.statuses);
        check_status(c, format!("{at}.fallback.status"), f.status);
    }
    header_edits(c, &format!("{at}.request_headers"), &r.request_headers);
    header_edits(c, &format!("{at}.response_headers"), &r.response_headers);
    if let Some(b) = &r.rewrite_body {
        let at = format!("{at}.rewrite_body");
        if b.replacements.is_empty() {
            c.add(format!("{at}.replacements"), "at least one replacement");
        }
        for (i, ct) in b.content_types.iter().enumerate() {
            if !ct.contains('/') || HeaderValue::from_str(ct).is_err() {
                c.add(
                    format!("{at}.content_types[{i}]"),
                    format!("`{ct}` is not a MIME type"),
                );
            }
        }
        for (i, x) in b.replacements.iter().enumerate() {
            if x.find.is_empty() {
                c.add(format!("{at}.replacements[{i}].find"), "must not be empty");
            } else if x.regex {
                if let Err(e) = regex::bytes::RegexBuilder::new(&x.find)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    c.add(
                        format!("{at}.replacements[{i}].find"),
                        super::regex_error_message(&e),
                    );
                }
            }
        }
    }
}

pub(super) fn limits(c: &mut Collector, config: &Config) {
    let l = &config.limits;
    if l.header_read_timeout.is_zero() {
        c.add("limits.header_read_timeout", "must be greater than zero");
    }
    if l.max_header_bytes < 1024 {
        c.add("limits.max_header_bytes", "must be at least 1KiB");
    }
    if l.request_timeout.is_some_and(|d| d.is_zero()) {
        c.add("limits.request_timeout", "must be greater than zero");
    }
    if l.client_idle_timeout.is_zero() {
        c.add("limits.client_idle_timeout", "must be greater than zero");
    }
}

/// Whether `ip` may be fetched under the remote content policy.
///
/// Always refused, whatever the policy: unspecified, `0.0.0.0/8` ("this
/// network"; Linux dials 0.0.0.0 as the local host), broadcast and
/// multicast. Refused unless allowed: loopback (`allow_loopback`); RFC 1918,
/// carrier-grade NAT, ULA and link-local (`allow_private`). IPv4 written
/// inside IPv6 is judged as that IPv4 address: IPv4-mapped `::ffff:a.b.c.d`
/// and IPv4-compatible `::a.b.c.d` exactly like the IPv4 address, and the
/// translation prefixes NAT64 `64:ff9b::/96` and 6to4 `2002::/16` more
/// strictly: their embedded address must be a public one, with no
/// allowance, because the allow flags are about reaching this host's own
/// networks directly, never through a translator or relay. A translated
/// public address stays allowed (IPv6-only networks reach the internet
/// through NAT64).
pub fn remote_address_allowed(ip: IpAddr, policy: &crate::config::RemotePolicy) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => match embedded_v4(&v6) {
            Some((v4, Embedding::Translated)) => return v4_class(v4) == Class::Public,
            Some((v4, Embedding::Direct)) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    };
    match ip {
        IpAddr::V4(v4) => allowed_class(v4_class(v4), policy),
        IpAddr::V6(v6) => allowed_class(v6_class(v6), policy),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    Loopback,
    Private,
    /// Never a valid target.
    Never,
}

fn allowed_class(class: Class, policy: &crate::config::RemotePolicy) -> bool {
    match class {
        Class::Public => true,
        Class::Loopback => policy.allow_loopback,
        Class::Private => policy.allow_private,
        Class::Never => false,
    }
}

fn v4_class(v4: Ipv4Addr) -> Class {
    let o = v4.octets();
    if o[0] == 0 || v4.is_broadcast() || v4.is_multicast() {
        Class::Never
    } else if v4.is_loopback() {
        Class::Loopback
    } else if v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        // 100.64.0.0/10 (carrier-grade NAT) is as internal as RFC 1918.
        Class::Private
    } else {
        Class::Public
    }
}

fn v6_class(v6: Ipv6Addr) -> Class {
    let seg0 = v6.segments()[0];
    if v6.is_unspecified() || v6.is_multicast() {
        Class::Never
    } else if v6.is_loopback() {
        Class::Loopback
    } else if (seg0 & 0xfe00) == 0xfc00 || (seg0 & 0xffc0) == 0xfe80 {
        Class::Private
    } else {
        Class::Public
    }
}

/// How an IPv4 address is carried in an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedding {
    /// Mapped or compatible: the socket reaches the IPv4 address itself.
    Direct,
    /// NAT64 or 6to4: a translator or relay reaches it on our behalf.
    Translated,
}

/// The IPv4 address inside `v6`, if it carries one.
fn embedded_v4(v6: &Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some((v4, Embedding::Direct));
    }
    // `::` and `::1` are IPv6's own unspecified and loopback addresses.
    if s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
        return Some((last32, Embedding::Direct));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((last32, Embedding::Translated));
    }
    if s[0] == 0x2002 {
        return Some((Ipv4Addr::new(o[2], o[3], o[4], o[5]), Embedding::Translated));
    }
    None
}
