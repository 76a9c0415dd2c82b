//! Deltas on the Sync stream: who gets one, and the resync that falls back
//! to the whole snapshot.

use switchyard_shared::config::{Action, ReplaceAction, Rule, RuleMatch};
use switchyard_shared::proto::{self, control_message, node_message};

use super::tests::{connect_with, msg, next, next_snapshot, start};
use crate::service::{ChangeMeta, NamedOp, Service};

async fn add_rule(service: &Service, name: &str) -> u64 {
    let rule = Rule::new(
        name,
        RuleMatch {
            path_exact: Some(format!("/{name}")),
            ..RuleMatch::default()
        },
        Action::Replace(ReplaceAction {
            source: "hello".into(),
            status: 200,
            headers: Default::default(),
        }),
    );
    service
        .edit(
            ChangeMeta::new("test", "create_rule"),
            NamedOp::Create {
                item: rule,
                position: None,
            },
        )
        .await
        .expect("change")
        .version
}

#[tokio::test]
async fn nodes_on_the_previous_version_get_deltas_and_resync_on_request() {
    let cp = start().await;
    let mut fresh = connect_with(cp.grpc, "fresh", 0, "", true).await;
    let mut old = connect_with(cp.grpc, "old", 0, "", false).await;
    // Nothing applied yet: the whole snapshot, delta or not.
    assert_eq!(next_snapshot(&mut fresh).await.version, 1);
    assert_eq!(next_snapshot(&mut old).await.version, 1);

    let v2 = add_rule(&cp.service, "one").await;
    let control_message::Msg::Delta(delta) = next(&mut fresh).await else {
        panic!("expected a delta");
    };
    assert_eq!((delta.base_version, delta.version), (1, v2));
    let rules = delta.rules.expect("rule changes");
    assert_eq!(rules.set.len(), 1);
    assert_eq!(rules.set[0].name, "one");
    assert!(rules.removed.is_empty());
    // A node that does not accept deltas still gets whole snapshots.
    assert_eq!(next_snapshot(&mut old).await.version, v2);

    // The node says it does not run the base: it gets the whole snapshot,
    // and the resync is not recorded as a rejection.
    fresh
        .tx
        .send(msg(node_message::Msg::Nack(proto::Nack {
            version: v2,
            error: "delta base 1 is not the running version".into(),
            resync: true,
        })))
        .await
        .expect("nack");
    let full = next_snapshot(&mut fresh).await;
    assert_eq!(full.version, v2);
    let nodes = cp.service.nodes().list();
    assert!(nodes.iter().all(|n| n.last_nack.is_none()), "{nodes:?}");

    // After a real rejection the control plane no longer knows what the
    // node runs, so the next version comes whole; then deltas again.
    fresh
        .tx
        .send(msg(node_message::Msg::Nack(proto::Nack {
            version: v2,
            error: "cannot compile".into(),
            resync: false,
        })))
        .await
        .expect("nack");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let v3 = add_rule(&cp.service, "two").await;
    assert_eq!(next_snapshot(&mut fresh).await.version, v3);
    let v4 = add_rule(&cp.service, "three").await;
    let control_message::Msg::Delta(delta) = next(&mut fresh).await else {
        panic!("expected a delta");
    };
    assert_eq!((delta.base_version, delta.version), (v3, v4));
}

#[tokio::test]
async fn a_node_reconnecting_one_version_behind_gets_the_delta() {
    let cp = start().await;
    let current = cp.service.current();
    let v2 = add_rule(&cp.service, "one").await;
    let mut node = connect_with(cp.grpc, "n", current.version, &current.hash, true).await;
    let control_message::Msg::Delta(delta) = next(&mut node).await else {
        panic!("expected a delta");
    };
    assert_eq!((delta.base_version, delta.version), (current.version, v2));
    // Two versions behind: the whole snapshot.
    let v3 = add_rule(&cp.service, "two").await;
    let mut behind = connect_with(cp.grpc, "b", current.version, &current.hash, true).await;
    assert_eq!(next_snapshot(&mut behind).await.version, v3);
}
