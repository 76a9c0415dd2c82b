//! Route matching cost as the rule count grows (10, 1,000, 10,000 rules):
//! `cargo bench -p switchyard-shared --bench routing`.
//!
//! The configs mirror `bench/run.sh`: filler rules (hosts, path prefixes,
//! exact paths and every 100th a path regex) that the benchmark's request
//! never matches, followed by the rule it does match, so first-match
//! semantics must rule out every filler.

use std::fmt::Write as _;

use http::{HeaderMap, Method};
use switchyard_shared::parse::parse_yaml;
use switchyard_shared::routing::{RequestInfo, RouteTable};
use switchyard_shared::Config;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn main() {
    divan::main();
}

/// `n` rules in all, written as YAML (like the harness) so new optional
/// config fields never break the benchmark: fillers, one replace rule and the
/// `/bytes/` rule last.
fn config(n: usize) -> Config {
    let mut yaml = [
        "backends:",
        "  - name: bench",
        "    servers:",
        "      - address: 127.0.0.1:9",
        "content_sources:",
        "  - name: inline",
        "    inline: x",
        "rules:",
        "",
    ]
    .join("\n");
    for i in 0..n.saturating_sub(2) {
        let matcher = if i % 100 == 99 {
            format!("path_regex: \"^/re{i}/[0-9]+$\"")
        } else {
            match i % 3 {
                0 => format!("hosts: [f{i}.bench.test]"),
                1 => format!("path_prefix: /f{i}/"),
                _ => format!("path_exact: /f{i}/exact"),
            }
        };
        let _ = write!(
            yaml,
            "  - name: filler-{i}\n    match: {{ {matcher} }}\n    action: {{ forward: {{ backend: bench }} }}\n"
        );
    }
    for (name, matcher, action) in [
        (
            "replace",
            "path_exact: /replace/1k",
            "replace: { source: inline }",
        ),
        (
            "bytes",
            "path_prefix: /bytes/",
            "forward: { backend: bench }",
        ),
    ] {
        let _ = write!(
            yaml,
            "  - name: {name}\n    match: {{ {matcher} }}\n    action: {{ {action} }}\n"
        );
    }
    match parse_yaml(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("benchmark config with {n} rules does not parse: {e}"),
    }
}

fn table(n: usize) -> RouteTable {
    match RouteTable::compile(&config(n)) {
        Ok(t) => t,
        Err(e) => panic!("benchmark config with {n} rules is invalid: {e}"),
    }
}

/// Routes `host` + `path` (GET, no headers) and checks the expected rule won,
/// so the benchmark cannot silently measure a miss.
fn bench_route(bencher: divan::Bencher, n: usize, host: &str, path: &str, want: Option<&str>) {
    let table = table(n);
    let headers = HeaderMap::new();
    let req = RequestInfo {
        method: &Method::GET,
        host,
        path,
        headers: &headers,
    };
    let got = table.route(&req).map(|i| table.rules()[i].name.as_str());
    assert_eq!(got, want, "{n} rules: {host}{path}");
    bencher.bench_local(|| table.route(divan::black_box(&req)));
}

/// The request the load benchmark sends: matched by the last rule.
#[divan::bench(args = SIZES)]
fn last_rule(bencher: divan::Bencher, n: usize) {
    bench_route(bencher, n, "127.0.0.1:8080", "/bytes/1k", Some("bytes"));
}

/// A host rule in the middle of the config.
#[divan::bench(args = SIZES)]
fn host_rule(bencher: divan::Bencher, n: usize) {
    let i = (n / 2) / 3 * 3; // a multiple of 3 that is a host filler
    let host = format!("f{i}.bench.test");
    let want = format!("filler-{i}");
    bench_route(bencher, n, &host, "/anything", Some(&want));
}

/// A path regex rule (present from 100 rules on; exact path below that).
#[divan::bench(args = SIZES)]
fn regex_or_exact_rule(bencher: divan::Bencher, n: usize) {
    if n > 100 {
        bench_route(bencher, n, "127.0.0.1", "/re99/42", Some("filler-99"));
    } else {
        bench_route(bencher, n, "127.0.0.1", "/f2/exact", Some("filler-2"));
    }
}

/// No rule matches.
#[divan::bench(args = SIZES)]
fn miss(bencher: divan::Bencher, n: usize) {
    bench_route(bencher, n, "127.0.0.1", "/nothing/here", None);
}

/// Compiling (and validating) the table: the cost of applying a snapshot.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn compile(bencher: divan::Bencher, n: usize) {
    let cfg = config(n);
    bencher.bench_local(|| RouteTable::compile(divan::black_box(&cfg)).is_ok());
}
