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

struct Running {
    _dir: tempfile::TempDir,
    service: Service,
    api: SocketAddr,
    grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), crate::server::ServeError>>,
}

async fn start() -> Running {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut crate::options::Options)) -> Running {
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
async fn http_get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
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
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Node {
    tx: mpsc::Sender<proto::NodeMessage>,
    rx: Streaming<proto::ControlMessage>,
}

fn msg(m: node_message::Msg) -> proto::NodeMessage {
    proto::NodeMessage { msg: Some(m) }
}

async fn connect(grpc: SocketAddr, node_id: &str, version: u64, hash: &str) -> Node {
    let mut client = ControlPlaneClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect grpc");
    let (tx, rx) = mpsc::channel(8);
    tx.send(msg(node_message::Msg::Hello(proto::Hello {
        node_id: node_id.into(),
        build: "test-build".into(),
        last_applied_version: version,
        hash: hash.into(),
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

async fn next(node: &mut Node) -> control_message::Msg {
    tokio::time::timeout(Duration::from_secs(5), node.rx.message())
        .await
        .expect("a message in time")
        .expect("stream ok")
        .and_then(|m| m.msg)
        .expect("a message")
}

async fn next_snapshot(node: &mut Node) -> proto::Snapshot {
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

#[tokio::test]
async fn admin_service_uses_the_same_change_path_and_error_codes() {
    use futures::StreamExt;
    use switchyard_shared::proto::admin_client::AdminClient;
    let cp = start().await;
    let url = format!("http://{}", cp.grpc);
    let mut admin = AdminClient::connect(url.clone())
        .await
        .expect("admin client");

    let mut events = admin
        .watch_events(proto::WatchEventsRequest {
            types: vec!["config_changed".into()],
            after_seq: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    let current = admin
        .get_config(proto::GetConfigRequest {})
        .await
        .expect("get")
        .into_inner();
    assert_eq!(current.version, 1);
    let config = current.config.expect("config");

    // Identical config: no new version.
    let same = admin
        .put_config(proto::PutConfigRequest {
            config: Some(config.clone()),
            if_version: 1,
        })
        .await
        .expect("put")
        .into_inner();
    assert!(!same.changed);

    let domain: switchyard_shared::config::Config = serde_json::from_value(serde_json::json!({
        "rules": [{ "name": "g", "match": { "path_exact": "/g" }, "action": { "forward": { "backend": "web" } } }],
    }))
    .expect("rule");
    let rule = proto::Config::from(&domain).rules.remove(0);
    let created = admin
        .create_rule(proto::CreateRuleRequest {
            rule: Some(rule.clone()),
            position: Some(0),
            if_version: 1,
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.version, 2);
    let stale = admin
        .create_rule(proto::CreateRuleRequest {
            rule: Some(rule.clone()),
            position: None,
            if_version: 1,
        })
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    let dup = admin
        .create_rule(proto::CreateRuleRequest {
            rule: Some(rule),
            position: None,
            if_version: 0,
        })
        .await
        .expect_err("dup");
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    let missing = admin
        .delete_rule(proto::DeleteRuleRequest {
            name: "ghost".into(),
            if_version: 0,
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let mut bad = config.clone();
    if let Some(proto::rule::Action::Forward(f)) = bad.rules[1].action.as_mut() {
        f.backend = "ghost".into();
    }
    let invalid = admin
        .put_config(proto::PutConfigRequest {
            config: Some(bad.clone()),
            if_version: 0,
        })
        .await
        .expect_err("invalid");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let v = admin
        .validate_config(proto::ValidateConfigRequest { config: Some(bad) })
        .await
        .expect("validate")
        .into_inner();
    assert!(!v.valid);
    assert!(v.problems.iter().any(|p| p.path.contains("backend")));

    let rules = admin
        .list_rules(proto::ListRulesRequest {})
        .await
        .expect("rules")
        .into_inner();
    assert_eq!(rules.rules[0].name, "g");
    let history = admin
        .list_history(proto::ListHistoryRequest {})
        .await
        .expect("history")
        .into_inner();
    assert_eq!(
        history
            .entries
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
    let rolled = admin
        .rollback(proto::RollbackRequest { version: 1 })
        .await
        .expect("rollback")
        .into_inner();
    assert_eq!(rolled.version, 3);

    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("event in time")
        .expect("event")
        .expect("ok");
    assert_eq!(event.r#type, "config_changed");
    let data = event.data.expect("data");
    assert!(matches!(
        data.fields.get("version").and_then(|v| v.kind.clone()),
        Some(prost_types::value::Kind::NumberValue(n)) if n == 2.0
    ));

    // gRPC health says the services serve.
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("endpoint")
        .connect()
        .await
        .expect("channel");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "switchyard.v1.Admin".into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn websocket_events_filter_and_resume() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let cp = start().await;
    cp.service
        .edit::<switchyard_shared::config::Rule>(
            ChangeMeta::new("test", "delete_rule"),
            NamedOp::Delete {
                name: "maint".into(),
            },
        )
        .await
        .expect("change");
    // Resuming from 0 replays the retained config_changed event first.
    let url = format!("ws://{}/ws/events?types=config_changed&after_seq=0", cp.api);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let mut next_event = async || loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str::<serde_json::Value>(&t).expect("json");
        }
    };
    let first = next_event().await;
    assert_eq!(first["type"], "config_changed");
    assert_eq!(first["data"]["version"], 2);
    let seq = first["seq"].as_u64().expect("seq");
    cp.service
        .rollback(1, ChangeMeta::new("test", "rollback"))
        .await
        .expect("rollback");
    let second = next_event().await;
    assert_eq!(second["data"]["version"], 3);
    assert!(second["seq"].as_u64().expect("seq") > seq);
    assert!(second["timestamp"].is_string());
}

#[tokio::test]
async fn admin_calls_need_a_token_with_the_right_scope_when_tokens_are_set() {
    use switchyard_shared::proto::admin_client::AdminClient;
    let cp = start_with(|o| {
        o.api_tokens = vec![
            "ci:admin:admin-secret-1".parse().expect("token"),
            "dash:read:read-secret-1".parse().expect("token"),
        ];
    })
    .await;
    let mut admin = AdminClient::connect(format!("http://{}", cp.grpc))
        .await
        .expect("admin");
    fn with<T>(secret: &str, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {secret}").parse().expect("metadata"),
        );
        req
    }
    let denied = admin
        .get_config(proto::GetConfigRequest {})
        .await
        .expect_err("no token");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let read = admin
        .get_config(with("read-secret-1", proto::GetConfigRequest {}))
        .await
        .expect("read ok")
        .into_inner();
    let forbidden = admin
        .put_config(with(
            "read-secret-1",
            proto::PutConfigRequest {
                config: read.config.clone(),
                if_version: 0,
            },
        ))
        .await
        .expect_err("read token cannot write");
    assert_eq!(forbidden.code(), tonic::Code::PermissionDenied);
    let done = admin
        .rollback(with(
            "admin-secret-1",
            proto::RollbackRequest { version: 1 },
        ))
        .await
        .expect("admin ok")
        .into_inner();
    assert!(
        !done.changed,
        "rolling back to the current config is a no-op"
    );
    admin
        .delete_rule(with(
            "admin-secret-1",
            proto::DeleteRuleRequest {
                name: "maint".into(),
                if_version: 1,
            },
        ))
        .await
        .expect("delete");
    let audit = cp.service.audit(None, 1).await.expect("audit");
    assert_eq!(audit[0].actor, "ci");
}
