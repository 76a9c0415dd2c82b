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

fn millis() -> impl Strategy<Value = Duration> {
    (0u64..1_000_000).prop_map(Duration::from_millis)
}

fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z-]{1,10}", "[ -~]{0,12}", 0..3)
}

fn statuses() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(100u16..600, 0..3)
}

fn header_edits() -> impl Strategy<Value = HeaderEdits> {
    (headers(), prop::collection::vec("[a-z-]{1,10}", 0..3))
        .prop_map(|(set, remove)| HeaderEdits { set, remove })
}

fn traffic() -> impl Strategy<
    Value = (
        Option<HealthCheck>,
        Option<OutlierDetection>,
        Option<CircuitBreaker>,
        Option<RetryPolicy>,
    ),
> {
    (
        prop::option::of(
            (name(), millis(), millis(), 0u32..9, 0u32..9, statuses()).prop_map(
                |(
                    path,
                    interval,
                    timeout,
                    healthy_threshold,
                    unhealthy_threshold,
                    expected_statuses,
                )| HealthCheck {
                    path,
                    interval,
                    timeout,
                    healthy_threshold,
                    unhealthy_threshold,
                    expected_statuses,
                },
            ),
        ),
        prop::option::of((0u32..9, millis(), millis()).prop_map(
            |(consecutive_failures, base_ejection, max_ejection)| OutlierDetection {
                consecutive_failures,
                base_ejection,
                max_ejection,
            },
        )),
        prop::option::of((0u32..9, millis(), 0u32..9).prop_map(
            |(failure_threshold, open_duration, half_open_probes)| CircuitBreaker {
                failure_threshold,
                open_duration,
                half_open_probes,
            },
        )),
        prop::option::of(
            (
                0u32..5,
                millis(),
                millis(),
                prop::sample::subsequence(
                    vec![RetryOn::ConnectError, RetryOn::Timeout, RetryOn::Reset],
                    0..3,
                ),
                statuses(),
                any::<bool>(),
                (0u32..101, 0u32..50, 0u64..1_000_000),
            )
                .prop_map(
                    |(
                        max_retries,
                        backoff_base,
                        backoff_max,
                        retry_on,
                        retry_statuses,
                        retry_non_idempotent,
                        (budget_percent, min_retries_per_second, buffer_body),
                    )| {
                        RetryPolicy {
                            max_retries,
                            backoff_base,
                            backoff_max,
                            retry_on,
                            retry_statuses,
                            retry_non_idempotent,
                            budget_percent,
                            min_retries_per_second,
                            buffer_body,
                        }
                    },
                ),
        ),
    )
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
        (millis(), millis(), millis(), prop::option::of(millis())),
        prop::option::of(prop_oneof![
            name().prop_map(HashOn::Header),
            name().prop_map(HashOn::Cookie),
            Just(HashOn::ClientIp),
        ]),
        traffic(),
        prop_oneof![
            Just(HostHeader::Preserve),
            Just(HostHeader::Server),
            name().prop_map(HostHeader::Custom),
        ],
        prop_oneof![Just(UpstreamProtocol::Http1), Just(UpstreamProtocol::Http2)],
    )
        .prop_map(
            |(
                name,
                load_balancing,
                servers,
                (connect, request, idle, per_try),
                hash_on,
                (health_check, outlier_detection, circuit_breaker, retries),
                host_header,
                protocol,
            )| Backend {
                name,
                load_balancing,
                hash_on,
                servers: servers
                    .into_iter()
                    .map(|(address, weight)| Server { address, weight })
                    .collect(),
                timeouts: Timeouts {
                    connect,
                    request,
                    idle,
                    per_try,
                },
                health_check,
                outlier_detection,
                circuit_breaker,
                retries,
                host_header,
                protocol,
            },
        )
}

fn source() -> impl Strategy<Value = ContentSource> {
    (
        name(),
        prop::option::of("[a-z]+/[a-z]+"),
        0u8..3,
        text(),
        (millis(), millis(), 0u64..1 << 40, millis(), 0u32..10),
        prop::option::of(name()),
    )
        .prop_map(
            |(
                name,
                content_type,
                kind,
                body,
                (ttl, timeout, max_size, stale_if_error, max_redirects),
                fallback,
            )| {
                let mut s = ContentSource {
                    name,
                    content_type,
                    file: None,
                    inline: None,
                    remote: None,
                    fallback,
                };
                match kind {
                    0 => s.file = Some(body),
                    1 => s.inline = Some(body),
                    _ => {
                        s.remote = Some(RemoteSource {
                            url: format!("https://example.com/{}", body.len()),
                            ttl,
                            timeout,
                            max_size,
                            stale_if_error,
                            max_redirects,
                        })
                    }
                }
                s
            },
        )
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        (
            name(),
            prop::collection::vec("[a-z*.]{1,12}", 0..3),
            0u8..4,
            text(),
            prop::collection::vec("[A-Z]{3,7}", 0..3),
            headers(),
        ),
        any::<bool>(),
        (
            name(),
            prop::option::of("/[a-z]{0,6}"),
            prop::option::of("/[a-z]{0,6}"),
            0u16..600,
            headers(),
        ),
        prop::option::of((name(), statuses(), 0u16..600)),
        header_edits(),
        header_edits(),
        prop::option::of((
            prop::collection::vec("[a-z]+/[a-z]+", 0..3),
            prop::collection::vec((text(), text(), any::<bool>()), 0..3),
        )),
    )
        .prop_map(
            |(
                (name, hosts, path_kind, path, methods, match_headers),
                forward,
                act,
                fallback,
                request_headers,
                response_headers,
                rewrite,
            )| {
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
                let (target, strip_prefix, add_prefix, status, headers) = act;
                let action = if forward {
                    Action::Forward(ForwardAction {
                        backend: target,
                        strip_prefix,
                        add_prefix,
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
                    fallback: fallback.map(|(source, statuses, status)| Fallback {
                        source,
                        statuses,
                        status,
                    }),
                    request_headers,
                    response_headers,
                    rewrite_body: rewrite.map(|(content_types, reps)| BodyRewrite {
                        content_types,
                        replacements: reps
                            .into_iter()
                            .map(|(find, replace, regex)| Replacement {
                                find,
                                replace,
                                regex,
                            })
                            .collect(),
                    }),
                }
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::collection::vec((name(), "[0-9.]{1,15}:[0-9]{1,5}"), 0..3),
        prop::collection::vec(backend(), 0..3),
        prop::collection::vec(source(), 0..4),
        prop::collection::vec(rule(), 0..5),
        (
            millis(),
            0u64..1 << 30,
            0u64..1 << 30,
            prop::option::of(millis()),
            millis(),
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                listeners,
                backends,
                content_sources,
                rules,
                (hr, mh, mb, rt, idle),
                (allow_loopback, allow_private),
            )| Config {
                listeners: listeners
                    .into_iter()
                    .map(|(name, address)| Listener { name, address })
                    .collect(),
                limits: Limits {
                    header_read_timeout: hr,
                    max_header_bytes: mh,
                    max_body_bytes: mb,
                    request_timeout: rt,
                    client_idle_timeout: idle,
                },
                remote_content: RemotePolicy {
                    allow_loopback,
                    allow_private,
                },
                backends,
                content_sources,
                rules,
            },
        )
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
        prop_assert_eq!(&crate::parse::parse_json::<Config>(&json).expect("parse json"), &cfg);
        let yaml = crate::parse::to_yaml(&cfg);
        prop_assert_eq!(&crate::parse::parse_yaml(&yaml).expect("parse yaml"), &cfg);
    }
}

#[test]
fn missing_action_is_an_error_with_path() {
    let wire = proto::Config {
        rules: vec![proto::Rule {
            name: "r".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = Config::try_from(wire).unwrap_err();
    assert_eq!(err.to_string(), "rules[0].action: missing action");
}

#[test]
fn file_blobs_lists_resolved_files_only() {
    let source = |name: &str, file: Option<&str>, inline: Option<&str>| ContentSource {
        name: name.into(),
        content_type: None,
        file: file.map(String::from),
        inline: inline.map(String::from),
        remote: None,
        fallback: None,
    };
    let mut wire = proto::Config::from(&Config {
        content_sources: vec![
            source("a", Some("a.html"), None),
            source("b", None, Some("x")),
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
