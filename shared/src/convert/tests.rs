use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,12}"
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z-]{1,10}", "[ -~]{0,12}", 0..3)
}

fn backend() -> impl Strategy<Value = Backend> {
    (
        name(),
        prop_oneof![
            Just(LoadBalancing::RoundRobin),
            Just(LoadBalancing::WeightedRoundRobin),
            Just(LoadBalancing::LeastRequests),
            Just(LoadBalancing::Random),
            Just(LoadBalancing::ConsistentHash),
        ],
        prop::collection::vec(("[a-z0-9.]{1,12}:[0-9]{1,5}", 0u32..100), 0..4),
        (0u64..100_000, 0u64..100_000, 0u64..100_000),
    )
        .prop_map(|(name, load_balancing, servers, (c, r, i))| Backend {
            name,
            load_balancing,
            servers: servers
                .into_iter()
                .map(|(address, weight)| Server { address, weight })
                .collect(),
            timeouts: Timeouts {
                connect: Duration::from_millis(c),
                request: Duration::from_millis(r),
                idle: Duration::from_millis(i),
            },
        })
}

fn source() -> impl Strategy<Value = ContentSource> {
    (
        name(),
        prop::option::of("[a-z]+/[a-z]+"),
        any::<bool>(),
        text(),
    )
        .prop_map(|(name, content_type, is_file, body)| ContentSource {
            name,
            content_type,
            file: is_file.then(|| body.clone()),
            inline: (!is_file).then_some(body),
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        name(),
        prop::collection::vec("[a-z*.]{1,12}", 0..3),
        0u8..4,
        text(),
        prop::collection::vec("[A-Z]{3,7}", 0..3),
        headers(),
        any::<bool>(),
        (
            name(),
            prop::option::of("/[a-z]{0,6}"),
            0u16..600,
            headers(),
        ),
    )
        .prop_map(
            |(name, hosts, path_kind, path, methods, match_headers, forward, act)| {
                let mut matcher = RuleMatch {
                    hosts,
                    methods,
                    headers: match_headers,
                    ..RuleMatch::default()
                };
                match path_kind {
                    1 => matcher.path_prefix = Some(path),
                    2 => matcher.path_exact = Some(path),
                    3 => matcher.path_regex = Some(path),
                    _ => {}
                }
                let (target, strip_prefix, status, headers) = act;
                let action = if forward {
                    Action::Forward(ForwardAction {
                        backend: target,
                        strip_prefix,
                    })
                } else {
                    Action::Replace(ReplaceAction {
                        source: target,
                        status,
                        headers,
                    })
                };
                Rule {
                    name,
                    matcher,
                    action,
                }
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::collection::vec((name(), "[0-9.]{1,15}:[0-9]{1,5}"), 0..3),
        prop::collection::vec(backend(), 0..4),
        prop::collection::vec(source(), 0..4),
        prop::collection::vec(rule(), 0..6),
    )
        .prop_map(|(listeners, backends, content_sources, rules)| Config {
            listeners: listeners
                .into_iter()
                .map(|(name, address)| Listener { name, address })
                .collect(),
            backends,
            content_sources,
            rules,
        })
}

proptest! {
    #[test]
    fn domain_proto_domain_round_trips(cfg in config()) {
        let wire = proto::Config::from(&cfg);
        let back = Config::try_from(wire.clone()).expect("converts back");
        prop_assert_eq!(&back, &cfg);
        // And the wire form survives prost encoding.
        let bytes = prost::Message::encode_to_vec(&wire);
        let decoded: proto::Config = prost::Message::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(decoded, wire);
    }

    #[test]
    fn json_and_yaml_round_trip(cfg in config()) {
        let json = serde_json::to_vec(&cfg).expect("json");
        prop_assert_eq!(&crate::parse::parse_json(&json).expect("parse json"), &cfg);
        let yaml = crate::parse::to_yaml(&cfg);
        prop_assert_eq!(&crate::parse::parse_yaml(&yaml).expect("parse yaml"), &cfg);
    }
}

#[test]
fn missing_action_is_an_error_with_path() {
    let wire = proto::Config {
        rules: vec![proto::Rule {
            name: "r".into(),
            r#match: None,
            action: None,
        }],
        ..Default::default()
    };
    let err = Config::try_from(wire).unwrap_err();
    assert_eq!(err.to_string(), "rules[0].action: missing action");
}

#[test]
fn file_blobs_lists_resolved_files_only() {
    let mut wire = proto::Config::from(&Config {
        content_sources: vec![
            ContentSource {
                name: "a".into(),
                content_type: None,
                file: Some("a.html".into()),
                inline: None,
            },
            ContentSource {
                name: "b".into(),
                content_type: None,
                file: None,
                inline: Some("x".into()),
            },
        ],
        ..Default::default()
    });
    assert!(file_blobs(&wire).is_empty());
    if let Some(proto::content_source::Kind::File(f)) = &mut wire.content_sources[0].kind {
        f.sha256 = "ab".repeat(32);
        f.size = 7;
    }
    let blobs = file_blobs(&wire);
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs["a"].size, 7);
}
