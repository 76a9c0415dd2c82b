//! The Admin service's conversions: items survive the round trip through
//! their messages, missing parts are INVALID_ARGUMENT, and the answers keep
//! every field the REST answer has.

use std::collections::BTreeMap;

use switchyard_shared::config::{Action, Backend, ContentSource, ReplaceAction, Rule};
use switchyard_shared::proto;

use super::*;
use crate::error::ErrorCode;
use crate::service::CommandOutcome;

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid item")
}

#[test]
fn named_items_survive_the_round_trip_through_their_messages() {
    let backend: Backend = from_json(serde_json::json!({
        "name": "api",
        "load_balancing": "least_requests",
        "servers": [{ "address": "10.0.0.5:8080", "weight": 3 }, { "address": "10.0.0.6:8080" }],
        "timeouts": { "connect": "2s", "request": "5s" },
        "health_check": { "path": "/healthz", "interval": "3s" },
    }));
    let proto_backend = backend.to_proto();
    assert_eq!(proto_backend.name, "api");
    assert_eq!(proto_backend.servers.len(), 2);
    assert_eq!(Backend::from_proto(proto_backend).expect("back"), backend);

    for source in [
        serde_json::json!({ "name": "page", "file": "content/page.html" }),
        serde_json::json!({ "name": "maint", "inline": "back soon", "content_type": "text/plain", "fallback": "page" }),
        serde_json::json!({ "name": "remote", "remote": { "url": "https://example.com/x", "ttl": "30s" } }),
    ] {
        let source: ContentSource = from_json(source);
        let back = ContentSource::from_proto(source.to_proto()).expect("back");
        assert_eq!(back, source);
    }

    let rule: Rule = from_json(serde_json::json!({
        "name": "shop",
        "match": { "hosts": ["shop.example.com"], "path_prefix": "/shop", "methods": ["GET"] },
        "action": { "forward": { "backend": "api", "strip_prefix": "/shop" } },
    }));
    assert_eq!(Rule::from_proto(rule.to_proto()).expect("back"), rule);
}

#[test]
fn missing_items_and_missing_parts_are_bad_requests() {
    let none = required::<Backend>(None).expect_err("missing backend");
    assert_eq!(none.code, ErrorCode::BadRequest);
    assert!(none.message.contains("backend"), "{}", none.message);

    let no_kind = ContentSource::from_proto(proto::ContentSource {
        name: "x".into(),
        ..proto::ContentSource::default()
    })
    .expect_err("no content");
    assert_eq!(no_kind.code, ErrorCode::BadRequest);
    assert!(no_kind.message.contains("content"), "{}", no_kind.message);

    let no_action = Rule::from_proto(proto::Rule {
        name: "r".into(),
        ..proto::Rule::default()
    })
    .expect_err("no action");
    assert_eq!(no_action.code, ErrorCode::BadRequest);
    assert!(
        no_action.message.contains("action"),
        "{}",
        no_action.message
    );
    // And it reaches the client as INVALID_ARGUMENT, like REST's 400.
    assert_eq!(
        tonic::Status::from(no_action).code(),
        tonic::Code::InvalidArgument
    );
}

#[test]
fn a_test_rule_request_becomes_the_rest_sample_with_get_by_default() {
    let (name, sample) = sample(proto::TestRuleRequest {
        name: "shop".into(),
        method: String::new(),
        host: "shop.example.com".into(),
        path: "/shop/cart".into(),
        headers: [("x-canary".to_owned(), "1".to_owned())].into(),
    });
    assert_eq!(name, "shop");
    assert_eq!(sample.method, "GET");
    assert_eq!(sample.path, "/shop/cart");
    assert_eq!(
        sample.headers.get("x-canary").map(String::as_str),
        Some("1")
    );
}

#[test]
fn an_explanation_keeps_the_failed_condition_winner_and_action() {
    let explained = explanation(Explanation {
        version: 7,
        rule: "shop".into(),
        matched: false,
        failed_condition: Some("path `/x` does not start with `/shop`".into()),
        winning_rule: Some("maint".into()),
        winning_position: Some(2),
        action: Some(Action::Replace(ReplaceAction {
            source: "maintenance".into(),
            status: 503,
            headers: BTreeMap::from([("retry-after".to_owned(), "60".to_owned())]),
        })),
    });
    assert_eq!(explained.version, 7);
    assert!(!explained.matched);
    assert_eq!(
        explained.failed_condition.as_deref(),
        Some("path `/x` does not start with `/shop`")
    );
    assert_eq!(explained.winning_rule.as_deref(), Some("maint"));
    assert_eq!(explained.winning_position, Some(2));
    match explained.action.and_then(|a| a.kind) {
        Some(proto::rule_action::Kind::Replace(r)) => {
            assert_eq!(r.source, "maintenance");
            assert_eq!(r.status, 503);
            assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("60"));
        }
        other => panic!("want a replace action, got {other:?}"),
    }

    // No winner: no action (the data plane answers 404).
    let nobody = explanation(Explanation {
        version: 7,
        rule: "shop".into(),
        matched: false,
        failed_condition: Some("x".into()),
        winning_rule: None,
        winning_position: None,
        action: None,
    });
    assert!(nobody.winning_rule.is_none() && nobody.action.is_none());
}

#[test]
fn a_cache_clear_answer_lists_every_node_with_its_confirmation() {
    let answer = cache_cleared(CacheClearView {
        source: Some("page".into()),
        nodes_total: 2,
        nodes_confirmed: 1,
        nodes: vec![
            CommandOutcome {
                node_id: "a".into(),
                confirmed: true,
                ok: true,
                error: None,
                cleared_entries: 4,
            },
            CommandOutcome {
                node_id: "b".into(),
                confirmed: false,
                ok: false,
                error: Some("no answer before the timeout".into()),
                cleared_entries: 0,
            },
        ],
    });
    assert_eq!(answer.source.as_deref(), Some("page"));
    assert_eq!((answer.nodes_total, answer.nodes_confirmed), (2, 1));
    assert_eq!(answer.nodes[0].cleared_entries, 4);
    assert!(answer.nodes[0].confirmed && answer.nodes[0].error.is_none());
    assert!(!answer.nodes[1].confirmed);
    assert_eq!(
        answer.nodes[1].error.as_deref(),
        Some("no answer before the timeout")
    );
}

#[test]
fn position_and_version_zero_mean_absent() {
    assert_eq!(if_version(0), None);
    assert_eq!(if_version(3), Some(3));
    assert_eq!(position(None), None);
    assert_eq!(position(Some(2)), Some(2));
}
