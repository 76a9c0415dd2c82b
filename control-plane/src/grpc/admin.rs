//! The gRPC Admin service: the REST operations for tooling, over the same
//! service layer and the same error codes.

mod convert;

use std::sync::Arc;

use futures::StreamExt;
use switchyard_shared::config::{Backend, ContentSource, Rule};
use switchyard_shared::proto::{self, admin_server};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::BoxStream;
use crate::api::auth::{Auth, Scope};
use crate::error::ErrorCode;
use crate::service::{audit_action, ChangeMeta, Diff, NamedOp, Service};
use convert::{change, config_from, if_version, position, required, ProtoItem};

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

type Answer<T> = Result<Response<T>, Status>;

/// The generic halves of the named-item RPCs (rules, backends, content
/// sources): the same service calls as the REST handlers in `api/named.rs`.
impl AdminGrpc {
    fn get_item<T: ProtoItem>(&self, name: &str) -> Result<(u64, T::Proto), Status> {
        let (version, item) = self.service.named_item::<T>(name)?;
        Ok((version, item.to_proto()))
    }

    fn list_items<T: ProtoItem>(&self) -> (u64, Vec<T::Proto>) {
        let snap = self.service.current();
        let items = T::items(&snap.config).iter().map(T::to_proto).collect();
        (snap.version, items)
    }

    async fn create_item<T: ProtoItem>(
        &self,
        actor: String,
        item: Option<T::Proto>,
        at: Option<u32>,
        expected: u64,
    ) -> Answer<proto::ChangeResult> {
        let item = required::<T>(item)?;
        let meta =
            ChangeMeta::new(actor, audit_action::<T>("create")).if_version(if_version(expected));
        let op = NamedOp::Create {
            item,
            position: position(at),
        };
        Ok(Response::new(change(self.service.edit(meta, op).await?)))
    }

    async fn update_item<T: ProtoItem>(
        &self,
        actor: String,
        name: String,
        item: Option<T::Proto>,
        at: Option<u32>,
        expected: u64,
    ) -> Answer<proto::ChangeResult> {
        let item = required::<T>(item)?;
        let meta =
            ChangeMeta::new(actor, audit_action::<T>("update")).if_version(if_version(expected));
        let op = NamedOp::Update {
            name,
            item,
            position: position(at),
        };
        Ok(Response::new(change(self.service.edit(meta, op).await?)))
    }

    async fn delete_item<T: ProtoItem>(
        &self,
        actor: String,
        name: String,
        expected: u64,
    ) -> Answer<proto::ChangeResult> {
        let meta =
            ChangeMeta::new(actor, audit_action::<T>("delete")).if_version(if_version(expected));
        let op = NamedOp::<T>::Delete { name };
        Ok(Response::new(change(self.service.edit(meta, op).await?)))
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminGrpc {
    async fn get_config(
        &self,
        request: Request<proto::GetConfigRequest>,
    ) -> Answer<proto::VersionedConfig> {
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
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let req = request.into_inner();
        let config = config_from(req.config)?;
        let meta = ChangeMeta::new(actor, "put_config").if_version(if_version(req.if_version));
        let outcome = self.service.apply(meta, move |_| Ok(config)).await?;
        Ok(Response::new(change(outcome)))
    }

    async fn validate_config(
        &self,
        request: Request<proto::ValidateConfigRequest>,
    ) -> Answer<proto::ValidationResult> {
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
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        Ok(Response::new(change(
            self.service.reload_file(&actor).await?,
        )))
    }

    async fn list_rules(
        &self,
        request: Request<proto::ListRulesRequest>,
    ) -> Answer<proto::ListRulesResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        // The snapshot already holds the rules as messages.
        let snap = self.service.current();
        Ok(Response::new(proto::ListRulesResponse {
            version: snap.version,
            rules: snap.proto.rules.clone(),
        }))
    }

    async fn get_rule(
        &self,
        request: Request<proto::GetRuleRequest>,
    ) -> Answer<proto::GetRuleResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let (version, rule) = self.get_item::<Rule>(&request.into_inner().name)?;
        Ok(Response::new(proto::GetRuleResponse {
            version,
            rule: Some(rule),
        }))
    }

    async fn create_rule(
        &self,
        request: Request<proto::CreateRuleRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.create_item::<Rule>(actor, r.rule, r.position, r.if_version)
            .await
    }

    async fn update_rule(
        &self,
        request: Request<proto::UpdateRuleRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.update_item::<Rule>(actor, r.name, r.rule, r.position, r.if_version)
            .await
    }

    async fn delete_rule(
        &self,
        request: Request<proto::DeleteRuleRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.delete_item::<Rule>(actor, r.name, r.if_version).await
    }

    async fn test_rule(
        &self,
        request: Request<proto::TestRuleRequest>,
    ) -> Answer<proto::RuleExplanation> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let (name, sample) = convert::sample(request.into_inner());
        let explained = self.service.explain_rule(&name, &sample)?;
        Ok(Response::new(convert::explanation(explained)))
    }

    async fn list_backends(
        &self,
        request: Request<proto::ListBackendsRequest>,
    ) -> Answer<proto::ListBackendsResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let (version, backends) = self.list_items::<Backend>();
        Ok(Response::new(proto::ListBackendsResponse {
            version,
            backends,
        }))
    }

    async fn get_backend(
        &self,
        request: Request<proto::GetBackendRequest>,
    ) -> Answer<proto::GetBackendResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let (version, backend) = self.get_item::<Backend>(&request.into_inner().name)?;
        Ok(Response::new(proto::GetBackendResponse {
            version,
            backend: Some(backend),
        }))
    }

    async fn create_backend(
        &self,
        request: Request<proto::CreateBackendRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.create_item::<Backend>(actor, r.backend, r.position, r.if_version)
            .await
    }

    async fn update_backend(
        &self,
        request: Request<proto::UpdateBackendRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.update_item::<Backend>(actor, r.name, r.backend, r.position, r.if_version)
            .await
    }

    async fn delete_backend(
        &self,
        request: Request<proto::DeleteBackendRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.delete_item::<Backend>(actor, r.name, r.if_version)
            .await
    }

    async fn list_content_sources(
        &self,
        request: Request<proto::ListContentSourcesRequest>,
    ) -> Answer<proto::ListContentSourcesResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        Ok(Response::new(proto::ListContentSourcesResponse {
            version: self.service.current().version,
            sources: self
                .service
                .content_sources()
                .into_iter()
                .map(convert::source_info)
                .collect(),
        }))
    }

    async fn get_content_source(
        &self,
        request: Request<proto::GetContentSourceRequest>,
    ) -> Answer<proto::GetContentSourceResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let (version, source) = self.get_item::<ContentSource>(&request.into_inner().name)?;
        Ok(Response::new(proto::GetContentSourceResponse {
            version,
            source: Some(source),
        }))
    }

    async fn create_content_source(
        &self,
        request: Request<proto::CreateContentSourceRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.create_item::<ContentSource>(actor, r.source, r.position, r.if_version)
            .await
    }

    async fn update_content_source(
        &self,
        request: Request<proto::UpdateContentSourceRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.update_item::<ContentSource>(actor, r.name, r.source, r.position, r.if_version)
            .await
    }

    async fn delete_content_source(
        &self,
        request: Request<proto::DeleteContentSourceRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        self.delete_item::<ContentSource>(actor, r.name, r.if_version)
            .await
    }

    async fn clear_cache(
        &self,
        request: Request<proto::ClearCacheRequest>,
    ) -> Answer<proto::ClearCacheResponse> {
        let _actor = self.authorize(&request, Scope::Admin)?;
        let cleared = self
            .service
            .clear_cache(request.into_inner().source)
            .await?;
        Ok(Response::new(convert::cache_cleared(cleared)))
    }

    async fn get_cache_stats(
        &self,
        request: Request<proto::GetCacheStatsRequest>,
    ) -> Answer<proto::CacheStatsResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        Ok(Response::new(convert::cache_stats(
            self.service.cache_stats(),
        )))
    }

    async fn get_status(
        &self,
        request: Request<proto::GetStatusRequest>,
    ) -> Answer<proto::StatusResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        Ok(Response::new(convert::status(self.service.status())))
    }

    async fn get_health(
        &self,
        request: Request<proto::GetHealthRequest>,
    ) -> Answer<proto::HealthResponse> {
        // Public like `/api/health`: no token needed. A control plane
        // without tokens still answers local callers only.
        if !self.auth.enabled() {
            self.authorize(&request, Scope::Read)?;
        }
        Ok(Response::new(convert::health(self.service.health().await)))
    }

    async fn list_nodes(
        &self,
        request: Request<proto::ListNodesRequest>,
    ) -> Answer<proto::ListNodesResponse> {
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
    ) -> Answer<proto::ListHistoryResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let entries = self.service.history().await?;
        Ok(Response::new(proto::ListHistoryResponse {
            entries: entries.iter().map(convert::history_entry).collect(),
        }))
    }

    async fn get_history_entry(
        &self,
        request: Request<proto::GetHistoryEntryRequest>,
    ) -> Answer<proto::HistoryEntryDetail> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let entry = self
            .service
            .history_entry(request.into_inner().version)
            .await?;
        Ok(Response::new(proto::HistoryEntryDetail {
            entry: Some(convert::history_entry(&entry)),
            config: Some(proto::Config::from(&entry.config)),
        }))
    }

    async fn rollback(
        &self,
        request: Request<proto::RollbackRequest>,
    ) -> Answer<proto::ChangeResult> {
        let actor = self.authorize(&request, Scope::Admin)?;
        let r = request.into_inner();
        let meta = ChangeMeta::new(actor, "rollback").if_version(if_version(r.if_version));
        Ok(Response::new(change(
            self.service.rollback(r.version, meta).await?,
        )))
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Answer<proto::ListAuditResponse> {
        let _actor = self.authorize(&request, Scope::Read)?;
        let r = request.into_inner();
        let entries = self
            .service
            .audit_page(r.before, r.limit.map(|l| l as usize))
            .await?;
        Ok(Response::new(proto::ListAuditResponse {
            entries: entries.into_iter().map(convert::audit_entry).collect(),
        }))
    }

    type WatchEventsStream = BoxStream<proto::Event>;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Answer<Self::WatchEventsStream> {
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
                Ok(e) => Ok(convert::event(e)),
                Err(last) => Err(Status::resource_exhausted(format!(
                    "too slow to follow the event stream; resume with after_seq={last}"
                ))),
            })
            .take_until(stop);
        Ok(Response::new(Box::pin(stream)))
    }
}
