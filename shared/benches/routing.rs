//! Route matching cost as the rule count grows (10, 1,000, 10,000 rules):
//! `cargo bench -p switchyard-shared --bench routing`.
//!
//! The configs mirror `bench/run.sh`: filler rules (hosts, path prefixes,
//! exact paths and every 100th a path regex) that the benchmark's request
//! never matches, followed by the rule it does match, so first-match
//! semantics must rule out every filler.

use http::{HeaderMap, Method};
use switchyard_shared::config::{
    Action, Backend, Config, ContentSource, ForwardAction, ReplaceAction, Rule, RuleMatch, Server,
};
use switchyard_shared::routing::{RequestInfo, RouteTable};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn main() {
    divan::main();
}

fn forward() -> Action {
    Action::Forward(ForwardAction {
        backend: "bench".into(),
        strip_prefix: None,
    })
}

fn filler(i: usize) -> Rule {
    let mut m = RuleMatch::default();
    if i % 100 == 99 {
        m.path_regex = Some(format!("^/re{i}/[0-9]+$"));
    } else {
        match i % 3 {
            0 => m.hosts = vec![format!("f{i}.bench.test")],
            1 => m.path_prefix = Some(format!("/f{i}/")),
            _ => m.path_exact = Some(format!("/f{i}/exact")),
        }
    }
    Rule {
        name: format!("filler-{i}"),
        matcher: m,
        action: forward(),
    }
}

/// `n` rules in all: fillers, one replace rule and the `/bytes/` rule last.
fn config(n: usize) -> Config {
    let mut rules: Vec<Rule> = (0..n.saturating_sub(2)).map(filler).collect();
    rules.push(Rule {
        name: "replace".into(),
        matcher: RuleMatch {
            path_exact: Some("/replace/1k".into()),
            ..RuleMatch::default()
        },
        action: Action::Replace(ReplaceAction {
            source: "inline".into(),
            status: 200,
            headers: Default::default(),
        }),
    });
    rules.push(Rule {
        name: "bytes".into(),
        matcher: RuleMatch {
            path_prefix: Some("/bytes/".into()),
            ..RuleMatch::default()
        },
        action: forward(),
    });
    Config {
        backends: vec![Backend {
            name: "bench".into(),
            load_balancing: Default::default(),
            servers: vec![Server {
                address: "127.0.0.1:9".into(),
                weight: 1,
            }],
            timeouts: Default::default(),
        }],
        content_sources: vec![ContentSource {
            name: "inline".into(),
            content_type: None,
            file: None,
            inline: Some("x".into()),
        }],
        rules,
        ..Config::default()
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
