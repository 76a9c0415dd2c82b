//! The gRPC Admin service: the REST operations for tooling, over the same
//! service layer and the same error codes.

use std::sync::Arc;

use futures::StreamExt;
use switchyard_shared::config::{Config, Rule};
use switchyard_shared::proto::{self, admin_server};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::BoxStream;
use crate::api::auth::{Auth, Scope};
use crate::error::{ErrorCode, ServiceError};
use crate::events::Event;
use crate::service::{ChangeMeta, ChangeOutcome, Diff, NamedOp, Service};

const ACTOR: &str = "grpc";

#[derive(Clone)]
pub struct AdminGrpc {
    service: Service,
    shutdown: watch::Receiver<bool>,
    /// The same tokens as the REST API (`authorization: Bearer ...`).
    auth: Arc<Auth>,
}

impl AdminGrpc {
    pub fn new(service: Service, shutdown: watch::Receiver<bool>, auth: Auth) -> Self {
        Self {
            service,
            shutdown,
            auth: Arc::new(auth),
        }
    }

    /// Checks the caller's token; returns the actor for the audit log.
    fn authorize<T>(&self, request: &Request<T>, needed: Scope) -> Result<String, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !self.auth.enabled() {
            // Without tokens the admin API is for local tooling only; the
            // port itself may be reachable because data planes sync on it.
            let local = request.remote_addr().is_none_or(|a| a.ip().is_loopback());
            if !local {
                return Err(Status::permission_denied(
                    "the admin API accepts remote calls only when API tokens are configured",
                ));
            }
        }
        let id = self.auth.check(presented, needed)?;
        Ok(id.unwrap_or_else(|| ACTOR.to_owned()))
    }

    pub fn into_server(self) -> admin_server::AdminServer<Self> {
        admin_server::AdminServer::new(self)
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
    }
}

fn if_version(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn config_from(c: Option<proto::Config>) -> Result<Config, ServiceError> {
    let c = c.ok_or_else(|| ServiceError::bad_request("config is required"))?;
    Config::try_from(c).map_err(|e| ServiceError::bad_request(e.to_string()))
}

fn rule_from(r: Option<proto::Rule>) -> Result<Rule, ServiceError> {
    let r = r.ok_or_else(|| ServiceError::bad_request("rule is required"))?;
    let wrapped = proto::Config {
        rules: vec![r],
        ..proto::Config::default()
    };
    let mut config =
        Config::try_from(wrapped).map_err(|e| ServiceError::bad_request(e.to_string()))?;
    config
        .rules
        .pop()
        .ok_or_else(|| ServiceError::bad_request("rule is required"))
}

fn position(p: Option<u32>) -> Option<usize> {
    p.map(|p| p as usize)
}

fn change(o: ChangeOutcome) -> Response<proto::ChangeResult> {
    Response::new(proto::ChangeResult {
        version: o.version,
        hash: o.hash,
        changed: o.changed,
        summary: o.summary,
    })
}

/// JSON -> protobuf `Value`, for event data.
fn to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn to_struct(o: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: o.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn event_to_proto(e: Event) -> proto::Event {
    let data = match e.data {
        serde_json::Value::Object(o) => Some(to_struct(o)),
        serde_json::Value::Null => None,
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            Some(to_struct(m))
        }
    };
    proto::Event {
        r#type: e.kind,
        seq: e.seq,
        timestamp: e.timestamp,
        data,
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminGrpc {
    async fn get_config(
        &self,
        request: Request<proto::GetConfigRequest>,
    ) -> Result<Response<proto::VersionedConfig>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let snap = self.service.current();
        Ok(Response::new(proto::VersionedConfig {
            version: snap.version,
            hash: snap.hash.clone(),
            config: Some(proto::Config::from(&*snap.config)),
        }))
    }

    async fn put_config(
        &self,
        request: Request<proto::PutConfigRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let req = request.into_inner();
        let config = config_from(req.config)?;
        let meta = ChangeMeta::new(actor, "put_config").if_version(if_version(req.if_version));
        Ok(change(self.service.apply(meta, move |_| Ok(config)).await?))
    }

    async fn validate_config(
        &self,
        request: Request<proto::ValidateConfigRequest>,
    ) -> Result<Response<proto::ValidationResult>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let config = config_from(request.into_inner().config)?;
        let current = self.service.current();
        let result = match self.service.check(config).await {
            Ok(checked) => proto::ValidationResult {
                valid: true,
                problems: Vec::new(),
                diff_summary: Diff::between(&current.config, &checked.config).summary(),
            },
            Err(e) if e.code == ErrorCode::ValidationFailed => proto::ValidationResult {
                valid: false,
                problems: e
                    .problems
                    .into_iter()
                    .map(|p| proto::Problem {
                        path: p.path,
                        message: p.message,
                    })
                    .collect(),
                diff_summary: String::new(),
            },
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(result))
    }

    async fn reload_config(
        &self,
        request: Request<proto::ReloadConfigRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        Ok(change(self.service.reload_file(&actor).await?))
    }

    async fn list_rules(
        &self,
        request: Request<proto::ListRulesRequest>,
    ) -> Result<Response<proto::ListRulesResponse>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let snap = self.service.current();
        Ok(Response::new(proto::ListRulesResponse {
            version: snap.version,
            rules: snap.proto.rules.clone(),
        }))
    }

    async fn create_rule(
        &self,
        request: Request<proto::CreateRuleRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let req = request.into_inner();
        let item = rule_from(req.rule)?;
        let meta = ChangeMeta::new(actor, "create_rule").if_version(if_version(req.if_version));
        let op = NamedOp::Create {
            item,
            position: position(req.position),
        };
        Ok(change(self.service.edit(meta, op).await?))
    }

    async fn update_rule(
        &self,
        request: Request<proto::UpdateRuleRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let req = request.into_inner();
        let item = rule_from(req.rule)?;
        let meta = ChangeMeta::new(actor, "update_rule").if_version(if_version(req.if_version));
        let op = NamedOp::Update {
            name: req.name,
            item,
            position: position(req.position),
        };
        Ok(change(self.service.edit(meta, op).await?))
    }

    async fn delete_rule(
        &self,
        request: Request<proto::DeleteRuleRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let req = request.into_inner();
        let meta = ChangeMeta::new(actor, "delete_rule").if_version(if_version(req.if_version));
        let op = NamedOp::<Rule>::Delete { name: req.name };
        Ok(change(self.service.edit(meta, op).await?))
    }

    async fn list_nodes(
        &self,
        request: Request<proto::ListNodesRequest>,
    ) -> Result<Response<proto::ListNodesResponse>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let nodes = self
            .service
            .nodes()
            .list()
            .into_iter()
            .map(|n| proto::NodeStatus {
                node_id: n.node_id,
                connected: n.connected,
                last_seen_unix_ms: n.last_seen_unix_ms,
                acked_version: n.acked_version,
                last_nack: n.last_nack.map(|k| proto::NackInfo {
                    version: k.version,
                    error: k.error,
                }),
                build: n.build,
            })
            .collect();
        Ok(Response::new(proto::ListNodesResponse {
            desired_version: self.service.current().version,
            nodes,
        }))
    }

    async fn list_history(
        &self,
        request: Request<proto::ListHistoryRequest>,
    ) -> Result<Response<proto::ListHistoryResponse>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let entries = self
            .service
            .history()
            .await?
            .into_iter()
            .map(|h| proto::HistoryEntry {
                version: h.version,
                hash: h.hash,
                timestamp_unix_ms: h.timestamp_unix_ms,
                actor: h.actor,
                summary: h.summary,
            })
            .collect();
        Ok(Response::new(proto::ListHistoryResponse { entries }))
    }

    async fn rollback(
        &self,
        request: Request<proto::RollbackRequest>,
    ) -> Result<Response<proto::ChangeResult>, Status> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let version = request.into_inner().version;
        let meta = ChangeMeta::new(actor, "rollback");
        Ok(change(self.service.rollback(version, meta).await?))
    }

    type WatchEventsStream = BoxStream<proto::Event>;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let req = request.into_inner();
        let after = (req.after_seq != 0).then_some(req.after_seq);
        let mut shutdown = self.shutdown.clone();
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let stream = self
            .service
            .events()
            .follow(after, req.types)
            .map(|item| match item {
                Ok(e) => Ok(event_to_proto(e)),
                Err(last) => Err(Status::resource_exhausted(format!(
                    "too slow to follow the event stream; resume with after_seq={last}"
                ))),
            })
            .take_until(stop);
        Ok(Response::new(Box::pin(stream)))
    }
}
