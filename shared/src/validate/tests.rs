use super::*;
use crate::parse::parse_yaml;

fn problems(yaml: &str) -> Vec<String> {
    let cfg = parse_yaml(yaml).expect("yaml parses");
    match validate(&cfg) {
        Ok(()) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn valid_config_passes() {
    let p = problems(
        r#"
listeners: [{ name: main, address: "0.0.0.0:8080" }]
backends:
  - name: api
    servers: [{ address: "localhost:3000" }, { address: "127.0.0.1:3001", weight: 2 }]
content_sources:
  - { name: page, inline: "hi", content_type: text/html }
  - { name: logo, file: img/logo.png }
rules:
  - name: api
    match: { hosts: [api.example.com, "*.example.org"], path_prefix: /api, methods: [get, POST], headers: { x-env: canary } }
    action: { forward: { backend: api, strip_prefix: /api } }
  - name: page
    match: { path_regex: "^/p/[0-9]+$" }
    action: { replace: { source: page, status: 503, headers: { retry-after: "30" } } }
"#,
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let p = problems(
        r#"
backends:
  - name: api
    servers: [{ address: "nope" }]
  - name: api
    servers: []
content_sources:
  - { name: both, inline: x, file: y }
  - { name: esc, file: ../../etc/passwd }
rules:
  - name: a
    match: { path_regex: "(unclosed" }
    action: { forward: { backend: missing } }
  - name: a
    match: { path_prefix: nope, methods: ["G E T"], hosts: ["a.*.com"] }
    action: { replace: { source: ghost, status: 42 } }
"#,
    );
    let want = [
        "backends[0].servers[0].address",
        "backends[1].name: duplicate backend name `api`",
        "backends[1].servers",
        "content_sources[0]: set exactly one",
        "content_sources[1].file",
        "rules[0].match.path_regex: invalid regex",
        "rules[0].action.forward.backend: unknown backend `missing`",
        "rules[1].name: duplicate rule name `a`",
        "rules[1].match.path_prefix",
        "rules[1].match.methods[0]",
        "rules[1].match.hosts[0]",
        "rules[1].action.replace.source: unknown content source `ghost`",
        "rules[1].action.replace.status",
    ];
    for w in want {
        assert!(
            p.iter().any(|x| x.starts_with(w)),
            "missing `{w}` in {p:#?}"
        );
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
}

#[test]
fn several_path_conditions_are_rejected() {
    let p = problems(
        "content_sources: [{name: s, inline: x}]\nrules:\n- name: r\n  match: {path_prefix: /a, path_exact: /a}\n  action: {replace: {source: s}}\n",
    );
    assert_eq!(
        p,
        vec!["rules[0].match: set at most one of `path_prefix`, `path_exact` and `path_regex`"]
    );
}

#[test]
fn bad_names_and_listeners() {
    let p = problems("listeners: [{name: 'a b', address: 'x:1'}]\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("listeners[0].name"));
    assert!(p[1].starts_with("listeners[0].address"));
}

#[test]
fn traffic_blocks_and_extensions_are_checked() {
    let p = problems(
        r#"
limits: { header_read_timeout: 0s, max_header_bytes: 10 }
remote_content: { allow_loopback: true }
backends:
  - name: b
    load_balancing: round_robin
    hash_on: { header: x-user }
    servers: [{ address: "127.0.0.1:1" }]
    health_check: { path: health, interval: 1s, timeout: 2s, healthy_threshold: 0 }
    outlier_detection: { consecutive_failures: 0, base_ejection: 10m, max_ejection: 1m }
    circuit_breaker: { failure_threshold: 0 }
    retries: { budget_percent: 150, retry_statuses: [42], buffer_body: 64KiB }
    host_header: { custom: "bad host" }
content_sources:
  - { name: r, remote: { url: "ftp://x/y" }, fallback: r }
  - { name: a, inline: x, fallback: c }
  - { name: c, inline: y, fallback: a }
  - { name: ok, remote: { url: "https://example.com/x.html", ttl: 30s, max_size: 1MiB } }
rules:
  - name: r
    action: { forward: { backend: b, add_prefix: v1 } }
    fallback: { source: ghost, statuses: [700] }
    request_headers: { set: { "bad header": x }, remove: ["also bad"] }
    rewrite_body: { replacements: [{ find: "(", replace: x, regex: true }, { find: "", replace: y }] }
"#,
    );
    let want = [
        "limits.header_read_timeout",
        "limits.max_header_bytes",
        "backends[0].hash_on",
        "backends[0].health_check.path",
        "backends[0].health_check.timeout",
        "backends[0].health_check.healthy_threshold",
        "backends[0].outlier_detection.consecutive_failures",
        "backends[0].outlier_detection.base_ejection",
        "backends[0].circuit_breaker.failure_threshold",
        "backends[0].retries.budget_percent",
        "backends[0].retries.retry_statuses[0]",
        "backends[0].host_header",
        "content_sources[0].remote.url",
        "content_sources[0].fallback: a source cannot fall back to itself",
        "content_sources[1].fallback: fallback chain",
        "content_sources[2].fallback: fallback chain",
        "rules[0].action.forward.add_prefix",
        "rules[0].fallback.source",
        "rules[0].fallback.statuses[0]",
        "rules[0].request_headers.set.bad header",
        "rules[0].request_headers.remove[0]",
        "rules[0].rewrite_body.replacements[0].find: invalid regex",
        "rules[0].rewrite_body.replacements[1].find",
    ];
    for w in want {
        assert!(
            p.iter().any(|x| x.starts_with(w)),
            "missing `{w}` in {p:#?}"
        );
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
}

#[test]
fn remote_address_policy() {
    use crate::config::RemotePolicy;
    let deny = RemotePolicy::default();
    let lo = RemotePolicy {
        allow_loopback: true,
        allow_private: false,
    };
    let ip = |s: &str| s.parse().expect("ip");
    assert!(super::remote_address_allowed(ip("93.184.216.34"), &deny));
    for bad in [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.5",
        "169.254.1.1",
        "100.64.0.1",
        "fd00::1",
        "fe80::1",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "::",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        // IPv4-compatible (deprecated) forms.
        "::127.0.0.1",
        "::10.0.0.1",
        // NAT64 and 6to4 carrying internal IPv4 addresses.
        "64:ff9b::127.0.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::0.0.0.0",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "2002:a9fe:a9fe::",
        "2002:6440:1::",
    ] {
        assert!(
            !super::remote_address_allowed(ip(bad), &deny),
            "{bad} must be refused"
        );
    }
    // Public addresses stay reachable through the translation prefixes
    // (IPv6-only networks use NAT64) and as ordinary IPv6.
    for good in [
        "64:ff9b::93.184.216.34",
        "2002:5db8:d822::1",
        "2606:2800:220:1:248:1893:25c8:1946",
        "::ffff:93.184.216.34",
    ] {
        assert!(
            super::remote_address_allowed(ip(good), &deny),
            "{good} must be allowed"
        );
    }
    assert!(super::remote_address_allowed(ip("127.0.0.1"), &lo));
    assert!(super::remote_address_allowed(ip("::ffff:127.0.0.1"), &lo));
    assert!(super::remote_address_allowed(ip("::1"), &lo));
    assert!(!super::remote_address_allowed(ip("10.0.0.1"), &lo));
    // The allow flags never open the always-refused ranges, nor internal
    // addresses reached through a translator or relay.
    let all = RemotePolicy {
        allow_loopback: true,
        allow_private: true,
    };
    assert!(super::remote_address_allowed(ip("10.0.0.1"), &all));
    assert!(super::remote_address_allowed(ip("fd00::1"), &all));
    for never in [
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "::",
        "64:ff9b::127.0.0.1",
        "64:ff9b::10.0.0.1",
        "2002:7f00:1::",
        "2002:a00:1::",
    ] {
        assert!(
            !super::remote_address_allowed(ip(never), &all),
            "{never} must be refused even when everything is allowed"
        );
    }
}
