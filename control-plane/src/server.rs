//! Startup in steps: [`ControlPlane::validate`] reads and checks the config
//! and writes nothing; [`Validated::load`] opens sled and loads it (callers
//! bind their listeners in between, so a port in use writes nothing either);
//! [`Prepared::serve`] runs REST and gRPC on those listeners until the
//! shutdown future resolves. [`ControlPlane::prepare`] is validate + load.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use switchyard_shared::parse::{parse_yaml, ParseError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::auth::{parse_token_lines, Token};
use crate::content::ContentRoot;
use crate::error::{ErrorCode, Problem, ServiceError};
use crate::grpc::{reflection_server, AdminGrpc, ControlPlaneGrpc};
use crate::options::Options;
use crate::service::{check_config, Checked, Service, Settings};
use crate::store::{SledStore, StoreError};
use crate::watcher::{self, WatchPaths};
use switchyard_shared::proto::admin_server::AdminServer;
use switchyard_shared::proto::control_plane_server::ControlPlaneServer;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the config file {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Printed as `<file>:<line>:<column>: <message>`.
    #[error("{}", error.located(&path.display().to_string()))]
    Parse { path: PathBuf, error: ParseError },
    #[error("{}", invalid_message(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("cannot read the API tokens file {path}: {source}")]
    ReadTokens {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    BadToken {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("refusing to serve the REST API on {addr} without API tokens; set SWITCHYARD_API_TOKENS (or --api-token, or --api-tokens-file) or listen on loopback")]
    OpenApiOnNetwork { addr: std::net::SocketAddr },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Service(ServiceError),
}

fn invalid_message(path: &std::path::Path, problems: &[Problem]) -> String {
    let mut s = format!(
        "the config file {} is invalid ({} problem{}):",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

impl StartError {
    /// A problem with the config file itself (exit code 64).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Self::ReadConfig { .. }
                | Self::Parse { .. }
                | Self::Invalid { .. }
                | Self::ReadTokens { .. }
                | Self::BadToken { .. }
                | Self::OpenApiOnNetwork { .. }
        )
    }
}

/// Why serving stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("REST API server failed: {0}")]
    Api(#[source] std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
    #[error("a server task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
}

/// Entry point of the library.
pub struct ControlPlane;

/// A control plane with a validated config loaded, ready to serve.
pub struct Prepared {
    service: Service,
    /// What to watch for changes; `None` with `--no-watch`.
    watch: Option<WatchPaths>,
    /// REST middleware settings (auth, rate limit, CORS, body limit).
    api: crate::api::ApiConfig,
    /// The metrics tick and the alert thresholds.
    metrics_interval: std::time::Duration,
    alerts: crate::alerts::AlertSettings,
}

/// A config that passed every check; nothing is written yet.
pub struct Validated {
    options: Options,
    checked: Checked,
}

impl ControlPlane {
    /// Reads, parses and validates the config file (every problem, content
    /// root checks included). Writes nothing, not even the data directory.
    pub async fn validate(options: &Options) -> Result<Validated, StartError> {
        let mut options = options.clone();
        if let Some(path) = options.api_tokens_file.clone() {
            options.api_tokens.extend(read_tokens_file(&path).await?);
        }
        if options.api_tokens.is_empty() {
            if !options.api_listen.ip().is_loopback() {
                return Err(StartError::OpenApiOnNetwork {
                    addr: options.api_listen,
                });
            }
            tracing::info!("no API tokens configured: the REST API is unauthenticated and listens on loopback only; gRPC admin calls are accepted from loopback only");
        }
        let path = options.config.clone();
        let text =
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| StartError::ReadConfig {
                    path: path.clone(),
                    source,
                })?;
        let config = parse_yaml(&text).map_err(|error| StartError::Parse {
            path: path.clone(),
            error,
        })?;
        let content = ContentRoot::new(options.effective_content_root());
        let checked = tokio::task::spawn_blocking(move || check_config(&content, config))
            .await
            .map_err(|e| StartError::Service(ServiceError::internal(e.to_string())))?
            .map_err(|e| StartError::Invalid {
                path: path.clone(),
                problems: e.problems,
            })?;
        Ok(Validated { options, checked })
    }

    /// [`Self::validate`], then [`Validated::load`].
    pub async fn prepare(options: &Options) -> Result<Prepared, StartError> {
        Self::validate(options).await?.load().await
    }
}

impl Validated {
    /// Opens the store and applies the startup semantics (a new version
    /// when the file differs from the last one loaded).
    pub async fn load(self) -> Result<Prepared, StartError> {
        let Validated { options, checked } = self;
        let path = options.config.clone();
        let data_dir = options.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
            Ok::<_, StartError>(SledStore::open(&data_dir)?)
        })
        .await
        .map_err(|e| StartError::Service(ServiceError::internal(e.to_string())))??;

        let settings = Settings {
            config_path: path.clone(),
            content_root: options.effective_content_root(),
            history_limit: options.history_limit.max(1),
            command_timeout: options.command_timeout,
        };
        let service = Service::new(Arc::new(store), settings).map_err(|e| start_error(&path, e))?;
        let outcome = service
            .load_on_start(checked)
            .await
            .map_err(|e| start_error(&path, e))?;
        tracing::info!(
            version = outcome.version,
            hash = %outcome.hash,
            changed = outcome.changed,
            "config loaded"
        );
        let watch = (!options.no_watch).then(|| WatchPaths {
            config: path.clone(),
            content_root: options.effective_content_root(),
            ignore: vec![options.data_dir.clone()],
        });
        Ok(Prepared {
            service,
            watch,
            api: options.api_config(),
            metrics_interval: options.metrics_interval,
            alerts: options.alert_settings(),
        })
    }
}

async fn read_tokens_file(path: &std::path::Path) -> Result<Vec<Token>, StartError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartError::ReadTokens {
            path: path.to_path_buf(),
            source,
        })?;
    warn_if_others_can_read(path).await;
    parse_token_lines(&text).map_err(|(line, message)| StartError::BadToken {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Secrets readable by every user of the machine deserve a warning (not a
/// refusal: containers often mount secrets with generous modes).
async fn warn_if_others_can_read(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = tokio::fs::metadata(path).await {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(path = %path.display(), "the API tokens file is readable by every user; chmod 600 it");
        }
    }
}

fn start_error(path: &std::path::Path, e: ServiceError) -> StartError {
    if e.code == ErrorCode::ValidationFailed {
        StartError::Invalid {
            path: path.to_path_buf(),
            problems: e.problems,
        }
    } else {
        StartError::Service(e)
    }
}

impl Prepared {
    /// The service layer (for embedding and tests).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves REST on `api` and gRPC on `grpc` until `shutdown` resolves,
    /// then drains: sync streams end, in-flight requests finish.
    pub async fn serve(
        self,
        api: TcpListener,
        grpc: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let service = self.service;
        let reflection = reflection_server().map_err(ServeError::Reflection)?;
        let (health, health_server) = tonic_health::server::health_reporter();
        health
            .set_serving::<ControlPlaneServer<ControlPlaneGrpc>>()
            .await;
        health.set_serving::<AdminServer<AdminGrpc>>().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let trigger = {
            let stop_tx = stop_tx.clone();
            let service = service.clone();
            tokio::spawn(async move {
                shutdown.await;
                service.begin_shutdown();
                stop_tx.send_replace(true);
            })
        };
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // A dropped sender also means "stop".
            let _ = rx.wait_for(|s| *s).await;
        };

        let grpc_server = tonic::transport::Server::builder()
            .add_service(ControlPlaneGrpc::new(service.clone(), stop_rx.clone()).into_server())
            .add_service(
                AdminGrpc::new(
                    service.clone(),
                    stop_rx.clone(),
                    crate::api::auth::Auth::new(self.api.tokens.clone()),
                )
                .into_server(),
            )
            .add_service(health_server)
            .add_service(reflection)
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stopped(stop_rx.clone()));
        let app = crate::api::router_with(service.clone(), &self.api)
            .into_make_service_with_connect_info::<SocketAddr>();
        let api_server = axum::serve(api, app).with_graceful_shutdown(stopped(stop_rx.clone()));

        service.components().set_grpc(true);
        service.components().set_api(true);
        let watcher_task = match self.watch {
            Some(paths) => {
                let status = service.components().file_watcher.clone();
                match watcher::spawn(service.clone(), paths, status.clone(), stop_rx.clone()) {
                    Ok(task) => Some(task),
                    Err(e) => {
                        // Serving goes on; the API and /api/health say so.
                        tracing::error!(error = %e, "file watcher not started");
                        status.failed();
                        None
                    }
                }
            }
            None => None,
        };
        let metrics_task = tokio::spawn(crate::metrics::run(
            service.clone(),
            self.metrics_interval,
            self.alerts,
            stop_rx.clone(),
        ));
        crate::telemetry::start_metrics(&service);
        let grpc_task = {
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                let r = grpc_server.await.map_err(ServeError::Grpc);
                // One server failing stops the other.
                stop_tx.send_replace(true);
                r
            })
        };
        let api_task = {
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                let r = api_server.await.map_err(ServeError::Api);
                stop_tx.send_replace(true);
                r
            })
        };
        let (grpc_result, api_result) = tokio::join!(grpc_task, api_task);
        trigger.abort();
        service.begin_shutdown();
        metrics_task.abort();
        // Flush spans and metrics still buffered (bounded, off the runtime).
        let _ = tokio::task::spawn_blocking(|| {
            crate::telemetry::shutdown(std::time::Duration::from_secs(2))
        })
        .await;
        if let Some(task) = watcher_task {
            task.abort();
        }
        service.components().set_grpc(false);
        service.components().set_api(false);
        grpc_result.map_err(ServeError::Task)??;
        api_result.map_err(ServeError::Task)??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_example_config_in_deploy_is_valid() {
        let options = Options {
            config: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/switchyard.yaml"
            )),
            ..Options::default()
        };
        // The content root defaults to deploy/, where the maintenance page is.
        let validated = match ControlPlane::validate(&options).await {
            Ok(v) => v,
            Err(e) => panic!("deploy/switchyard.yaml: {e}"),
        };
        let config = &validated.checked.config;
        assert!(config.rules.len() >= 2, "{config:?}");
        assert!(validated.checked.blobs.contains_key("maintenance"));
    }

    #[test]
    fn a_parse_error_prints_file_line_and_column() {
        let err = |text: &str| StartError::Parse {
            path: PathBuf::from("conf/s.yaml"),
            error: parse_yaml(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} parsed")),
        };
        let text = err("rules:\n  - name: a\n    bogus: 1\n").to_string();
        assert!(text.starts_with("conf/s.yaml:3:5: "), "{text}");
        assert!(text.contains("bogus"), "{text}");
        // The very first byte: serde_yaml's own message has no location.
        let text = err("- a\n").to_string();
        assert!(text.starts_with("conf/s.yaml:1:1: "), "{text}");
    }

    fn example_options(tokens_file: PathBuf) -> Options {
        Options {
            config: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/switchyard.yaml"
            )),
            api_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            api_tokens_file: Some(tokens_file),
            ..Options::default()
        }
    }

    #[tokio::test]
    async fn a_tokens_file_adds_tokens_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("tokens");
        std::fs::write(
            &good,
            "# ops team\nops:admin:0123456789abcdef\n\n  viewer:read:fedcba9876543210  \n",
        )
        .expect("write");
        // Tokens make a non-loopback API listener acceptable.
        let validated = match ControlPlane::validate(&example_options(good)).await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let ids: Vec<_> = validated
            .options
            .api_tokens
            .iter()
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(ids, ["ops", "viewer"]);

        let bad = dir.path().join("bad-tokens");
        std::fs::write(
            &bad,
            "ops:admin:0123456789abcdef\nviewer:write:fedcba9876543210\n",
        )
        .expect("write");
        let Err(e) = ControlPlane::validate(&example_options(bad.clone())).await else {
            panic!("a bad scope was accepted");
        };
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}:2: ", bad.display())),
            "{text}"
        );
        assert!(text.contains("unknown scope `write`"), "{text}");
        assert!(
            !text.contains("fedcba9876543210"),
            "the secret leaked: {text}"
        );
        assert!(e.is_config_error());

        let missing = dir.path().join("absent");
        let Err(e) = ControlPlane::validate(&example_options(missing)).await else {
            panic!("a missing tokens file was accepted");
        };
        assert!(
            e.to_string().contains("cannot read the API tokens file"),
            "{e}"
        );
    }
}
