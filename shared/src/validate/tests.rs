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
