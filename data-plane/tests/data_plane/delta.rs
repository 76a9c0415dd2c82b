//! Deltas from the control plane: applied on top of the running version,
//! refused with a resync request otherwise, and persisted like any
//! snapshot (the cache folder always holds a whole snapshot).

use http::StatusCode;
use switchyard_shared::delta;
use switchyard_shared::proto;
use switchyard_shared::proto::control_message::Msg as ControlMsg;
use switchyard_shared::proto::node_message::Msg as NodeMsg;

use crate::fake_cp::snapshot;
use crate::support::*;
use crate::*;

const NEW_PAGE: &[u8] = b"<h1>page two</h1>\n";

fn delta_between(from: &proto::Snapshot, to: &proto::Snapshot) -> proto::SnapshotDelta {
    let (Some(a), Some(b)) = (&from.config, &to.config) else {
        panic!("snapshots carry configs");
    };
    delta::diff(from.version, &from.hash, a, to.version, &to.hash, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_apply_on_the_base_resync_otherwise_and_are_persisted() {
    let w = world().await;
    let hellos = w.cp.state.hellos();
    assert!(hellos[0].accepts_delta);
    let v1 = snapshot(&w.cp.state, 1, &w.yaml(), &[("pages/index.html", PAGE)]);

    // v2: one new rule, and the file behind `page` changed (a new blob).
    let yaml2 = w.yaml().replace(
        "rules:\n",
        "rules:\n  - name: added\n    match: { path_exact: /added }\n    action: { replace: { source: note, status: 202 } }\n",
    );
    let v2 = snapshot(&w.cp.state, 2, &yaml2, &[("pages/index.html", NEW_PAGE)]);
    let d2 = delta_between(&v1, &v2);
    assert_eq!(delta::size(&d2), 2, "{d2:?}");
    w.cp.state.send(ControlMsg::Delta(d2)).await;
    w.cp.state.wait_ack(2).await;
    let json = w.node.wait_version(2).await;
    assert_eq!(json["hash"], v2.hash);
    assert_eq!(get(&w.node.url("/added"), None).await.status.as_u16(), 202);
    assert_eq!(
        get(&w.node.url("/page"), None).await.body.as_bytes(),
        NEW_PAGE
    );
    let r = get(&w.node.url("/api/x"), Some("api.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);

    // A delta whose base the node does not run: a resync request, not a
    // rejection, and nothing changes.
    let v3 = snapshot(&w.cp.state, 3, &w.yaml(), &[("pages/index.html", PAGE)]);
    w.cp.state
        .send(ControlMsg::Delta(delta_between(&v1, &v3)))
        .await;
    let nack =
        w.cp.state
            .wait_for("resync nack", |m| match m {
                NodeMsg::Nack(n) if n.version == 3 => Some(n.clone()),
                _ => None,
            })
            .await;
    assert!(nack.resync, "{nack:?}");
    assert!(nack.error.contains("runs Some(2)"), "{}", nack.error);
    assert_eq!(w.node.readyz().await.1["version"], 2);

    // The delta-built version reaches the cache folder whole: restarted
    // without a control plane, the node serves it.
    wait_until_async("persisted version 2", || async {
        (w.node.readyz().await.1["persisted_version"] == 2).then_some(())
    })
    .await;
    let World {
        cp, node, cache, ..
    } = w;
    assert!(node.stop().await.is_ok());
    let url = cp.url();
    drop(cp.stop());
    let node = start_node(&url, cache.path()).await;
    let json = node.wait_version(2).await;
    assert_eq!(json["source"], "cached");
    assert_eq!(json["hash"], v2.hash);
    assert_eq!(get(&node.url("/added"), None).await.status.as_u16(), 202);
    assert_eq!(
        get(&node.url("/page"), None).await.body.as_bytes(),
        NEW_PAGE
    );
    // Only the blob of the persisted version is kept.
    let blobs = std::fs::read_dir(cache.path().join("blobs"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(blobs, 1);
}
