use proptest::prelude::*;

use super::*;
use crate::config::{ContentSource, ReplaceAction, RuleMatch};
use crate::reuse::RuleReuse;

fn rule(name: &str, m: RuleMatch) -> Rule {
    Rule::new(
        name,
        m,
        Action::Replace(ReplaceAction {
            source: "s".into(),
            status: 200,
            headers: Default::default(),
        }),
    )
}

fn table(rules: Vec<Rule>) -> RouteTable {
    let cfg = Config {
        content_sources: vec![ContentSource::inline("s", "x")],
        rules,
        ..Config::default()
    };
    RouteTable::compile(&cfg).expect("compiles")
}

fn route(
    t: &RouteTable,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let req = RequestInfo {
        method: &method,
        host,
        path,
        headers: &map,
    };
    t.route(&req).map(|i| t.rules()[i].name.clone())
}

fn m() -> RuleMatch {
    RuleMatch::default()
}

#[test]
fn first_match_in_config_order_wins() {
    let t = table(vec![
        rule(
            "api-exact",
            RuleMatch {
                path_exact: Some("/api/health".into()),
                ..m()
            },
        ),
        rule(
            "api",
            RuleMatch {
                path_prefix: Some("/api".into()),
                ..m()
            },
        ),
        rule(
            "api-v2",
            RuleMatch {
                path_prefix: Some("/api/v2".into()),
                ..m()
            },
        ),
        rule("catch-all", m()),
    ]);
    assert_eq!(
        route(&t, "GET", "x", "/api/health", &[]).as_deref(),
        Some("api-exact")
    );
    // `api` comes before the longer `api-v2` prefix, so it wins: order, not length.
    assert_eq!(
        route(&t, "GET", "x", "/api/v2/x", &[]).as_deref(),
        Some("api")
    );
    assert_eq!(
        route(&t, "GET", "x", "/other", &[]).as_deref(),
        Some("catch-all")
    );
}

#[test]
fn hosts_exact_and_wildcard() {
    let t = table(vec![
        rule(
            "exact",
            RuleMatch {
                hosts: vec!["api.example.com".into()],
                ..m()
            },
        ),
        rule(
            "wild",
            RuleMatch {
                hosts: vec!["*.example.com".into()],
                ..m()
            },
        ),
    ]);
    assert_eq!(
        route(&t, "GET", "API.Example.com:8080", "/", &[]).as_deref(),
        Some("exact")
    );
    assert_eq!(
        route(&t, "GET", "a.b.example.com", "/", &[]).as_deref(),
        Some("wild")
    );
    assert_eq!(
        route(&t, "GET", "example.com", "/", &[]),
        None,
        "wildcard excludes the apex"
    );
    assert_eq!(route(&t, "GET", "badexample.com", "/", &[]), None);
}

#[test]
fn methods_headers_and_regex() {
    let t = table(vec![
        rule(
            "post-canary",
            RuleMatch {
                methods: vec!["post".into()],
                headers: [("x-env".to_owned(), "canary".to_owned())].into(),
                ..m()
            },
        ),
        rule(
            "num",
            RuleMatch {
                path_regex: Some("^/items/[0-9]+$".into()),
                ..m()
            },
        ),
    ]);
    assert_eq!(
        route(&t, "POST", "h", "/", &[("x-env", "canary")]).as_deref(),
        Some("post-canary")
    );
    assert_eq!(route(&t, "GET", "h", "/", &[("x-env", "canary")]), None);
    assert_eq!(route(&t, "POST", "h", "/", &[("x-env", "prod")]), None);
    assert_eq!(
        route(&t, "GET", "h", "/items/42", &[]).as_deref(),
        Some("num")
    );
    assert_eq!(route(&t, "GET", "h", "/items/x", &[]), None);
}

#[test]
fn explain_names_the_failed_condition() {
    let t = table(vec![rule(
        "r",
        RuleMatch {
            hosts: vec!["a.com".into()],
            path_prefix: Some("/p".into()),
            methods: vec!["GET".into()],
            ..m()
        },
    )]);
    let map = HeaderMap::new();
    let get = Method::GET;
    let req = |host, path| RequestInfo {
        method: &get,
        host,
        path,
        headers: &map,
    };
    assert!(t.explain(0, &req("a.com", "/p/1")).is_ok());
    assert!(t
        .explain(0, &req("b.com", "/p"))
        .unwrap_err()
        .contains("host `b.com`"));
    assert!(t
        .explain(0, &req("a.com", "/q"))
        .unwrap_err()
        .contains("path_prefix `/p`"));
    let post = Method::POST;
    let r = RequestInfo {
        method: &post,
        host: "a.com",
        path: "/p",
        headers: &map,
    };
    assert!(t.explain(0, &r).unwrap_err().contains("method POST"));
}

#[test]
fn ten_thousand_rules_compile_and_route() {
    let rules: Vec<Rule> = (0..10_000)
        .map(|i| {
            rule(
                &format!("r{i}"),
                RuleMatch {
                    hosts: vec![format!("svc{}.example.com", i % 100)],
                    path_prefix: Some(format!("/svc/{i}/")),
                    ..m()
                },
            )
        })
        .collect();
    let t = table(rules);
    assert_eq!(
        route(&t, "GET", "svc42.example.com", "/svc/9942/x", &[]).as_deref(),
        Some("r9942")
    );
    assert_eq!(
        route(&t, "GET", "svc42.example.com", "/svc/9943/x", &[]),
        None
    );
}

/// Ten rules of every kind the router indexes.
fn ten_rules() -> Vec<Rule> {
    let host = |h: &str| vec![h.to_owned()];
    vec![
        rule(
            "hello",
            RuleMatch {
                path_exact: Some("/hello".into()),
                ..m()
            },
        ),
        rule(
            "users",
            RuleMatch {
                path_regex: Some("^/users/[0-9]+$".into()),
                ..m()
            },
        ),
        rule(
            "api-post",
            RuleMatch {
                path_prefix: Some("/api/".into()),
                methods: vec!["POST".into()],
                ..m()
            },
        ),
        rule(
            "api",
            RuleMatch {
                path_prefix: Some("/api/".into()),
                ..m()
            },
        ),
        rule(
            "shop",
            RuleMatch {
                hosts: host("*.shop.example"),
                ..m()
            },
        ),
        rule(
            "admin",
            RuleMatch {
                hosts: host("admin.example"),
                path_prefix: Some("/panel".into()),
                ..m()
            },
        ),
        rule(
            "beta",
            RuleMatch {
                path_prefix: Some("/beta".into()),
                headers: [("x-beta".to_owned(), "1".to_owned())].into(),
                ..m()
            },
        ),
        rule(
            "static",
            RuleMatch {
                path_prefix: Some("/static/".into()),
                ..m()
            },
        ),
        rule(
            "item",
            RuleMatch {
                hosts: host("admin.example"),
                path_regex: Some("^/item/[a-z]+$".into()),
                ..m()
            },
        ),
        rule(
            "default",
            RuleMatch {
                path_prefix: Some("/".into()),
                ..m()
            },
        ),
    ]
}

/// 10,000 rules none of the probes below can match, of every kind the
/// router indexes: a scan over rules would examine all of them.
fn filler(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let name = format!("filler-{i}");
            let rm = match i % 5 {
                0 => RuleMatch {
                    path_exact: Some(format!("/filler/{i}")),
                    ..m()
                },
                // Prefixes of one length: one more probe, whatever their number.
                1 => RuleMatch {
                    path_prefix: Some(format!("/f/{i:05}/")),
                    ..m()
                },
                2 => RuleMatch {
                    hosts: vec![format!("h{i}.example")],
                    path_prefix: Some("/".into()),
                    ..m()
                },
                3 => RuleMatch {
                    hosts: vec![format!("*.w{i}.example")],
                    ..m()
                },
                // Regexes under their own hosts (a few hundred per host
                // would be one regex set per bucket, tried only there).
                _ => RuleMatch {
                    hosts: vec![format!("re{}.example", i % 50)],
                    path_regex: Some(format!("^/re/{i}/[0-9]+$")),
                    ..m()
                },
            };
            rule(&name, rm)
        })
        .collect()
}

/// The steps `route` took and what it found.
fn measured(
    t: &RouteTable,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Option<String>, u64) {
    take_work();
    let found = route(t, method, host, path, headers);
    (found, take_work())
}

/// Method, host, path, headers, and the rule that must answer.
type Probe<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

#[test]
fn work_per_request_stays_flat_from_10_to_10_010_rules() {
    let small = table(ten_rules());
    // Fillers first: a first-match scan would wade through all of them.
    let mut rules = filler(10_000);
    rules.extend(ten_rules());
    let big = table(rules);
    let probes: [Probe; 9] = [
        ("GET", "a.test", "/hello", &[], Some("hello")),
        ("GET", "a.test", "/users/42", &[], Some("users")),
        ("POST", "a.test", "/api/x", &[], Some("api-post")),
        ("GET", "a.test", "/api/x", &[], Some("api")),
        ("GET", "b.shop.example", "/cart", &[], Some("shop")),
        ("GET", "admin.example", "/item/abc", &[], Some("item")),
        ("GET", "a.test", "/beta/x", &[("x-beta", "1")], Some("beta")),
        (
            "GET",
            "deep.sub.domain.test",
            "/static/app.js",
            &[],
            Some("static"),
        ),
        ("GET", "a.test", "/nothing", &[], Some("default")),
    ];
    for (method, host, path, headers, want) in probes {
        let (found_small, work_small) = measured(&small, method, host, path, headers);
        let (found_big, work_big) = measured(&big, method, host, path, headers);
        assert_eq!(found_small.as_deref(), want, "{method} {host}{path}");
        assert_eq!(found_big.as_deref(), want, "{method} {host}{path}");
        assert!(work_small > 0, "the tally counts nothing");
        // The fillers add one prefix length and a few hash probes, never a
        // number of steps that grows with the rule count.
        assert!(
            work_big <= work_small + 3 && work_big <= 24,
            "{method} {host}{path}: {work_small} steps with 10 rules, {work_big} with 10,010"
        );
    }
}

// Property: the indexed router agrees with a linear scan of `check`.
fn arb_match() -> impl Strategy<Value = RuleMatch> {
    let host = prop_oneof![
        Just("a.com"),
        Just("b.a.com"),
        Just("*.a.com"),
        Just("c.org")
    ];
    let path = prop_oneof![Just("/"), Just("/a"), Just("/a/b"), Just("/ab")];
    (
        prop::collection::vec(host, 0..2),
        0u8..4,
        path,
        prop::collection::vec(prop_oneof![Just("GET"), Just("POST")], 0..2),
        prop::option::of(prop_oneof![Just("1"), Just("2")]),
    )
        .prop_map(|(hosts, kind, path, methods, header)| {
            let mut rm = RuleMatch {
                hosts: hosts.into_iter().map(String::from).collect(),
                methods: methods.into_iter().map(String::from).collect(),
                ..RuleMatch::default()
            };
            rm.methods.dedup();
            match kind {
                1 => rm.path_prefix = Some(path.into()),
                2 => rm.path_exact = Some(path.into()),
                3 => rm.path_regex = Some(format!("^{path}")),
                _ => {}
            }
            if let Some(v) = header {
                rm.headers.insert("x-v".into(), v.into());
            }
            rm
        })
}

proptest! {
    #[test]
    fn indexed_route_equals_linear_scan(
        matches in prop::collection::vec(arb_match(), 0..12),
        host in prop_oneof![Just("a.com"), Just("b.a.com"), Just("x.b.a.com"), Just("c.org"), Just("A.COM:80")],
        path in prop_oneof![Just("/"), Just("/a"), Just("/a/b"), Just("/ab"), Just("/abc")],
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT)],
        header in prop::option::of(prop_oneof![Just("1"), Just("2")]),
    ) {
        let rules = matches.into_iter().enumerate().map(|(i, rm)| rule(&format!("r{i}"), rm)).collect();
        let t = table(rules);
        let mut headers = HeaderMap::new();
        if let Some(v) = header {
            headers.insert("x-v", HeaderValue::from_static(v));
        }
        let req = RequestInfo { method: &method, host, path, headers: &headers };
        let linear = t.rules().iter().position(|r| r.check(&req).is_ok());
        prop_assert_eq!(t.route(&req), linear);
    }
}

#[test]
fn unchanged_rules_keep_their_compiled_form() {
    let regex = |name: &str, re: &str| {
        rule(
            name,
            RuleMatch {
                path_regex: Some(re.into()),
                ..m()
            },
        )
    };
    let old_rules = vec![regex("a", "^/a"), regex("b", "^/b"), regex("c", "^/c")];
    let old_cfg = Config {
        content_sources: vec![ContentSource::inline("s", "x")],
        rules: old_rules,
        ..Config::default()
    };
    let old = RouteTable::compile(&old_cfg).expect("compiles");
    let mut new_cfg = old_cfg.clone();
    new_cfg.rules.insert(0, regex("new", "^/n"));
    new_cfg.rules[3] = regex("c", "^/changed");
    let reuse = RuleReuse::between(&old_cfg, &new_cfg);
    let new = RouteTable::compile_reusing(&new_cfg, Some(&old), &reuse).expect("compiles");
    assert!(Arc::ptr_eq(&new.rules()[1], &old.rules()[0]));
    assert!(Arc::ptr_eq(&new.rules()[2], &old.rules()[1]));
    assert!(!Arc::ptr_eq(&new.rules()[3], &old.rules()[2]));
    assert_eq!(
        route(&new, "GET", "h", "/changed", &[]).as_deref(),
        Some("c")
    );
    assert_eq!(route(&new, "GET", "h", "/c", &[]), None);
    assert_eq!(route(&new, "GET", "h", "/n", &[]).as_deref(), Some("new"));

    // A reused rule is still checked against the rest of the config.
    let mut broken = new_cfg.clone();
    broken.content_sources.clear();
    let reuse = RuleReuse::between(&new_cfg, &broken);
    let err = RouteTable::compile_reusing(&broken, Some(&new), &reuse).expect_err("invalid");
    assert_eq!(err.problems.len(), 4, "{err}");
}

proptest! {
    // Property: compiling a changed config while reusing the previous
    // table routes exactly like compiling it from scratch.
    #[test]
    fn reusing_compile_equals_full_compile(
        old in prop::collection::vec((0u8..8, arb_match()), 0..10),
        new in prop::collection::vec((0u8..8, arb_match()), 0..10),
        keep in prop::collection::vec(any::<bool>(), 10),
    ) {
        let named = |v: Vec<(u8, RuleMatch)>| {
            let mut seen = std::collections::HashSet::new();
            v.into_iter()
                .filter(|(n, _)| seen.insert(*n))
                .map(|(n, rm)| rule(&format!("r{n}"), rm))
                .collect::<Vec<_>>()
        };
        let old_cfg = Config {
            content_sources: vec![ContentSource::inline("s", "x")],
            rules: named(old),
            ..Config::default()
        };
        // Half of the new rules are copies of old ones, so many are reused.
        let mut rules = named(new);
        for (i, r) in rules.iter_mut().enumerate() {
            if keep[i] {
                if let Some(o) = old_cfg.rules.iter().find(|o| o.name == r.name) {
                    *r = o.clone();
                }
            }
        }
        let new_cfg = Config { rules, ..old_cfg.clone() };
        let old_t = RouteTable::compile(&old_cfg).expect("compiles");
        let reuse = RuleReuse::between(&old_cfg, &new_cfg);
        let reused = RouteTable::compile_reusing(&new_cfg, Some(&old_t), &reuse).expect("compiles");
        let full = RouteTable::compile(&new_cfg).expect("compiles");
        for host in ["a.com", "b.a.com", "x.b.a.com", "c.org"] {
            for path in ["/", "/a", "/a/b", "/ab", "/abc"] {
                for method in ["GET", "POST"] {
                    for header in [&[][..], &[("x-v", "1")][..], &[("x-v", "2")][..]] {
                        prop_assert_eq!(
                            route(&reused, method, host, path, header),
                            route(&full, method, host, path, header)
                        );
                    }
                }
            }
        }
    }
}
