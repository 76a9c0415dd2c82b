//! The gRPC Admin service, its token checks, server reflection and the
//! WebSocket event stream, against a control plane on loopback sockets.

use std::time::Duration;

use switchyard_shared::proto;

use super::tests::start;
use super::tests::start_with;
use crate::service::{ChangeMeta, NamedOp};

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
        .rollback(proto::RollbackRequest {
            version: 1,
            if_version: 0,
        })
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
    let mut cp = start().await;
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

    // Shutdown closes the socket instead of waiting for the client.
    cp.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
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
            proto::RollbackRequest {
                version: 1,
                if_version: 0,
            },
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

#[tokio::test]
async fn server_reflection_lists_the_switchyard_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let cp = start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cp.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("channel");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["switchyard.v1.Admin", "switchyard.v1.ControlPlane"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_describes_the_new_admin_messages() {
    use prost::Message;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let cp = start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cp.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("channel");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "switchyard.v1.Admin".into(),
        )),
    };
    let reply = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner()
        .message()
        .await
        .expect("reply")
        .expect("a reply");
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("expected file descriptors");
    };
    let admin = files
        .file_descriptor_proto
        .iter()
        .filter_map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).ok())
        .find(|f| f.name() == "switchyard/v1/admin.proto")
        .expect("admin.proto is described");
    let service = admin.service.first().expect("the Admin service");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for rpc in [
        "TestRule",
        "ListAudit",
        "CreateBackend",
        "ClearCache",
        "GetHealth",
    ] {
        assert!(methods.contains(&rpc), "{rpc} not in {methods:?}");
    }
    let messages: Vec<&str> = admin.message_type.iter().map(|m| m.name()).collect();
    for message in ["RuleExplanation", "ClearCacheResponse", "HealthResponse"] {
        assert!(messages.contains(&message), "{message} not in {messages:?}");
    }
}

#[tokio::test]
async fn clear_cache_rpc_lists_each_nodes_confirmation() {
    use super::tests::{connect, msg, next, next_snapshot};
    use switchyard_shared::proto::admin_client::AdminClient;
    use switchyard_shared::proto::{control_message, node_message};
    let cp = start_with(|o| o.command_timeout = Duration::from_millis(500)).await;
    let mut answering = connect(cp.grpc, "a", 0, "").await;
    let mut silent = connect(cp.grpc, "b", 0, "").await;
    next_snapshot(&mut answering).await;
    next_snapshot(&mut silent).await;
    let mut admin = AdminClient::connect(format!("http://{}", cp.grpc))
        .await
        .expect("admin client");

    let unknown = admin
        .clear_cache(proto::ClearCacheRequest {
            source: Some("nope".into()),
        })
        .await
        .expect_err("unknown source");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut caller = admin.clone();
    let call = tokio::spawn(async move {
        caller
            .clear_cache(proto::ClearCacheRequest {
                source: Some("page".into()),
            })
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
                cleared_entries: 2,
            },
        )))
        .await
        .expect("result");
    let answer = call.await.expect("join").expect("clear").into_inner();
    assert_eq!(answer.source.as_deref(), Some("page"));
    assert_eq!((answer.nodes_total, answer.nodes_confirmed), (2, 1));
    let a = &answer.nodes[0];
    assert_eq!(
        (a.node_id.as_str(), a.confirmed, a.ok, a.cleared_entries),
        ("a", true, true, 2)
    );
    let b = &answer.nodes[1];
    assert_eq!((b.node_id.as_str(), b.confirmed), ("b", false));
    assert!(b.error.is_some());

    let big = admin
        .create_backend(proto::CreateBackendRequest {
            backend: Some(proto::Backend {
                name: "far".into(),
                servers: vec![proto::Server {
                    address: "127.0.0.1:9".into(),
                    weight: 1,
                }],
                ..proto::Backend::default()
            }),
            position: Some(2_000_000),
            if_version: 0,
        })
        .await
        .expect_err("position above the maximum");
    assert_eq!(big.code(), tonic::Code::InvalidArgument);
    let limit = admin
        .list_audit(proto::ListAuditRequest {
            before: None,
            limit: Some(1001),
        })
        .await
        .expect_err("limit above the maximum");
    assert_eq!(limit.code(), tonic::Code::InvalidArgument);
}
