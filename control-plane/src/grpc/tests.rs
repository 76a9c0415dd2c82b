//! The Sync stream and FetchBlob over a real loopback socket with the
//! generated client, observed through the REST API on its own socket.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_shared::proto::{
    self, control_message, control_plane_client::ControlPlaneClient, node_message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::server::ControlPlane;
use crate::service::{ChangeMeta, NamedOp, Service};
use crate::test_support::{fixture, PAGE, SAMPLE_YAML};

pub(super) struct Running {
    _dir: tempfile::TempDir,
    pub service: Service,
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), crate::server::ServeError>>,
}

impl Running {
    /// Triggers shutdown and waits (bounded) for `serve` to return Ok.
    pub(super) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .expect("server stops in time")
            .expect("join");
        result.expect("serve ok");
    }
}

pub(super) async fn start() -> Running {
    start_with(|_| {}).await
}

pub(super) async fn start_with(tweak: impl FnOnce(&mut crate::options::Options)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = fixture(dir.path(), SAMPLE_YAML);
    tweak(&mut options);
    let prepared = ControlPlane::prepare(&options).await.expect("prepare");
    let service = prepared.service().clone();
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let (api_addr, grpc_addr) = (
        api.local_addr().expect("addr"),
        grpc.local_addr().expect("addr"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(prepared.serve(api, grpc, async move {
        let _ = stopped.await;
    }));
    Running {
        _dir: dir,
        service,
        api: api_addr,
        grpc: grpc_addr,
        stop: Some(stop),
        server,
    }
}

/// A minimal HTTP/1.1 GET over a real socket; returns the JSON body.
pub(super) async fn http_get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect api");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("bad body ({e}): {text}"))
}

/// Polls `check` until it holds or a deadline passes.
pub(super) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) struct Node {
    pub(super) tx: mpsc::Sender<proto::NodeMessage>,
    rx: Streaming<proto::ControlMessage>,
}

pub(super) fn msg(m: node_message::Msg) -> proto::NodeMessage {
    proto::NodeMessage { msg: Some(m) }
}

pub(super) async fn connect(grpc: SocketAddr, node_id: &str, version: u64, hash: &str) -> Node {
    connect_with(grpc, node_id, version, hash, false).await
}

pub(super) async fn connect_with(
    grpc: SocketAddr,
    node_id: &str,
    version: u64,
    hash: &str,
    accepts_delta: bool,
) -> Node {
    let mut client = ControlPlaneClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect grpc");
    let (tx, rx) = mpsc::channel(8);
    tx.send(msg(node_message::Msg::Hello(proto::Hello {
        node_id: node_id.into(),
        build: "test-build".into(),
        last_applied_version: version,
        hash: hash.into(),
        accepts_delta,
    })))
    .await
    .expect("hello");
    let rx = client
        .sync(ReceiverStream::new(rx))
        .await
        .expect("sync")
        .into_inner();
    Node { tx, rx }
}

pub(super) async fn next(node: &mut Node) -> control_message::Msg {
    tokio::time::timeout(Duration::from_secs(5), node.rx.message())
        .await
        .expect("a message in time")
        .expect("stream ok")
        .and_then(|m| m.msg)
        .expect("a message")
}

pub(super) async fn next_snapshot(node: &mut Node) -> proto::Snapshot {
    match next(node).await {
        control_message::Msg::Snapshot(s) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn sync_round_trip_snapshot_ack_nodes_and_blob() {
    let mut cp = start().await;
    let mut node = connect(cp.grpc, "dp-1", 0, "").await;
    let snap = next_snapshot(&mut node).await;
    assert_eq!(snap.version, 1);
    let config = snap.config.expect("config");
    let blobs = switchyard_shared::convert::file_blobs(&config);
    let page = blobs.get("page").expect("page blob").clone();
    assert_eq!(page.size, PAGE.len() as u64);

    // Fetch the blob before acking, as a data plane does.
    let mut client = ControlPlaneClient::connect(format!("http://{}", cp.grpc))
        .await
        .expect("client");
    let mut chunks = client
        .fetch_blob(proto::FetchBlobRequest {
            sha256: page.sha256.clone(),
        })
        .await
        .expect("fetch")
        .into_inner();
    let first = chunks.message().await.expect("chunk").expect("first chunk");
    assert_eq!(first.total_size, PAGE.len() as u64);
    let mut data = first.data.to_vec();
    while let Some(c) = chunks.message().await.expect("chunk") {
        data.extend_from_slice(&c.data);
    }
    assert_eq!(data, PAGE.as_bytes());
    let unknown = client
        .fetch_blob(proto::FetchBlobRequest {
            sha256: "00".repeat(32),
        })
        .await
        .expect_err("unknown blob");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    node.tx
        .send(msg(node_message::Msg::Ack(proto::Ack { version: 1 })))
        .await
        .expect("ack");
    let api = cp.api;
    eventually("the ack in GET /api/nodes", async || {
        let v = http_get_json(api, "/api/nodes").await;
        v["desired_version"] == 1 && v["nodes"][0]["acked_version"] == 1
    })
    .await;
    let v = http_get_json(api, "/api/nodes").await;
    assert_eq!(v["nodes"][0]["node_id"], "dp-1");
    assert_eq!(v["nodes"][0]["connected"], true);
    assert_eq!(v["nodes"][0]["build"], "test-build");
    assert_eq!(v["nodes"][0]["last_nack"], serde_json::Value::Null);

    // A node already at the current version gets no snapshot on connect:
    // its first message is the next version.
    let current = cp.service.current();
    let mut up_to_date = connect(cp.grpc, "dp-2", current.version, &current.hash).await;
    cp.service
        .edit::<switchyard_shared::config::Rule>(
            ChangeMeta::new("test", "delete_rule"),
            NamedOp::Delete {
                name: "maint".into(),
            },
        )
        .await
        .expect("change");
    assert_eq!(next_snapshot(&mut node).await.version, 2);
    assert_eq!(next_snapshot(&mut up_to_date).await.version, 2);

    // A NACK is recorded with its error.
    node.tx
        .send(msg(node_message::Msg::Nack(proto::Nack {
            version: 2,
            error: "cannot compile".into(),
            resync: false,
        })))
        .await
        .expect("nack");
    eventually("the nack", async || {
        let v = http_get_json(api, "/api/nodes").await;
        v["nodes"][0]["last_nack"]["error"] == "cannot compile"
    })
    .await;

    // Closing the node's side marks it disconnected.
    drop(node);
    eventually("dp-1 disconnected", async || {
        let v = http_get_json(api, "/api/nodes").await;
        v["nodes"][0]["connected"] == false && v["nodes"][1]["connected"] == true
    })
    .await;

    // Shutdown ends the remaining stream and the servers return.
    if let Some(stop) = cp.stop.take() {
        let _ = stop.send(());
    }
    let result = tokio::time::timeout(Duration::from_secs(5), &mut cp.server)
        .await
        .expect("server stops in time")
        .expect("join");
    result.expect("serve ok");
    let end = tokio::time::timeout(Duration::from_secs(5), up_to_date.rx.message())
        .await
        .expect("stream ends in time");
    assert!(matches!(end, Ok(None) | Err(_)));
}

#[tokio::test]
async fn the_first_message_must_be_hello() {
    let cp = start().await;
    let mut client = ControlPlaneClient::connect(format!("http://{}", cp.grpc))
        .await
        .expect("client");
    let (tx, rx) = mpsc::channel(1);
    tx.send(msg(node_message::Msg::Ack(proto::Ack { version: 1 })))
        .await
        .expect("send");
    let status = client
        .sync(ReceiverStream::new(rx))
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn cache_clear_commands_collect_per_node_confirmations() {
    let cp = start().await;
    let mut answering = connect(cp.grpc, "a", 0, "").await;
    let mut silent = connect(cp.grpc, "b", 0, "").await;
    next_snapshot(&mut answering).await;
    next_snapshot(&mut silent).await;
    let service = cp.service.clone();
    let fanout = tokio::spawn(async move {
        service
            .send_command(
                proto::command::Kind::ClearCache(proto::ClearCache {
                    source: "page".into(),
                }),
                Duration::from_millis(500),
            )
            .await
    });
    let control_message::Msg::Command(cmd) = next(&mut answering).await else {
        panic!("expected a command");
    };
    answering
        .tx
        .send(msg(node_message::Msg::CommandResult(
            proto::CommandResult {
                id: cmd.id,
                ok: true,
                error: String::new(),
                cleared_entries: 3,
            },
        )))
        .await
        .expect("result");
    let outcomes = fanout.await.expect("join");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        (
            outcomes[0].node_id.as_str(),
            outcomes[0].confirmed,
            outcomes[0].cleared_entries
        ),
        ("a", true, 3)
    );
    assert_eq!(
        (outcomes[1].node_id.as_str(), outcomes[1].confirmed),
        ("b", false)
    );
}
