//! [`DataPlane`]: one node's tasks (sync, proxy listeners, admin port)
//! started on pre-bound listeners and stopped by a shutdown future.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tonic::transport::Endpoint;

use crate::cache::DiskCache;
use crate::deadline::Deadlines;
use crate::error::DataPlaneError;
use crate::events::EventSink;
use crate::listener::serve_proxy;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::proxy::Proxy;
use crate::shutdown::{self, Shutdown};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::state::{NodeState, SyncStatus};
use crate::{admin, sync};

/// The proxy address used when neither `--listen` nor the config names one.
pub const DEFAULT_PROXY_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);

/// A data plane node, ready to serve.
#[derive(Debug)]
pub struct DataPlane {
    options: Options,
    state: Arc<NodeState>,
    endpoint: Endpoint,
}

impl DataPlane {
    /// Checks the options and opens the cache folder; binds nothing.
    pub fn new(options: Options) -> Result<Self, DataPlaneError> {
        let node_id = options.resolved_node_id();
        let cache_dir = options.resolved_cache_dir(&node_id);
        let cache = DiskCache::open(cache_dir)?;
        let endpoint = sync::endpoint(&options.control_plane).map_err(|reason| {
            DataPlaneError::ControlPlaneUrl {
                url: options.control_plane.clone(),
                reason,
            }
        })?;
        crate::metrics::set_request_metrics(!options.no_request_metrics);
        let (events, events_rx) = EventSink::channel();
        let state = Arc::new(NodeState {
            node_id,
            control_plane: options.control_plane.clone(),
            snapshots: Arc::new(SnapshotCell::default()),
            metrics: Arc::new(Metrics::default()),
            cache,
            persist: Arc::default(),
            sync: SyncStatus::default(),
            started: Instant::now(),
            events,
            events_rx: Mutex::new(Some(events_rx)),
        });
        Ok(Self {
            options,
            state,
            endpoint,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.state.node_id
    }

    /// Notified whenever a snapshot is applied.
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.state.snapshots.subscribe()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives
    /// in-flight requests the grace period.
    ///
    /// A valid cached snapshot is served at once. With no `proxy`
    /// listeners, the applied config's `listeners` (else 0.0.0.0:8080) are
    /// bound when the first snapshot is applied, each announced on stdout
    /// as `listening proxy <addr>`; later listener changes need a restart.
    pub async fn serve(
        self,
        proxy: Vec<TcpListener>,
        admin: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DataPlaneError> {
        crate::telemetry::init(&self.state.node_id, &self.state.metrics);
        let state = self.state.clone();
        let loaded = tokio::task::spawn_blocking(move || sync::load_cached(&state)).await;
        match loaded {
            Ok(Ok(Some(s))) => tracing::info!(
                version = s.version(),
                "serving the cached snapshot until the control plane answers"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "ignoring the cached snapshot"),
            Err(e) => tracing::warn!(error = %e, "loading the cached snapshot failed"),
        }

        let grace = self.options.shutdown_grace;
        let (trigger, signal) = shutdown::channel();
        let (fatal_tx, mut fatal_rx) = mpsc::channel::<DataPlaneError>(1);
        let deadlines = Deadlines::new();
        let proxy_service = Arc::new(Proxy::new(
            self.state.snapshots.clone(),
            self.state.metrics.clone(),
            deadlines.clone(),
        ));
        let mut tasks = JoinSet::new();

        // Listed first so shutdown finds it writing what is pending.
        tasks.spawn(sync::persist_run(
            self.state.persist.clone(),
            self.state.cache.clone(),
            signal.clone(),
        ));
        tasks.spawn(sync::run(
            self.state.clone(),
            self.endpoint.clone(),
            self.options.metrics_interval,
            signal.clone(),
        ));
        // Times out upstream tries (`deadline.rs`).
        tasks.spawn(deadlines.sweep(signal.clone()));

        let router = admin::router(self.state.clone());
        let mut admin_signal = signal.clone();
        let admin_fatal = fatal_tx.clone();
        tasks.spawn(async move {
            let served = axum::serve(admin, router)
                .with_graceful_shutdown(async move { admin_signal.wait().await })
                .await;
            if let Err(source) = served {
                let _ = admin_fatal
                    .send(DataPlaneError::Serve {
                        role: "admin",
                        source,
                    })
                    .await;
            }
        });

        if proxy.is_empty() {
            tasks.spawn(bind_from_config(
                self.state.snapshots.subscribe(),
                proxy_service,
                signal.clone(),
                grace,
                fatal_tx,
            ));
        } else {
            for listener in proxy {
                tasks.spawn(serve_proxy(
                    listener,
                    proxy_service.clone(),
                    signal.clone(),
                    grace,
                ));
            }
        }

        let result = tokio::select! {
            () = shutdown => Ok(()),
            Some(e) = fatal_rx.recv() => Err(e),
        };
        tracing::info!("stopping: no new connections; in-flight requests get {grace:?}");
        trigger.fire();
        // Tasks drain within the grace period; the margin covers the rest.
        let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        crate::telemetry::shutdown(Duration::from_secs(2)).await;
        result
    }
}

/// Prints `listening <role> <addr>` on stdout, for tools that pass port 0.
pub fn announce(role: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {role} {addr}");
    let _ = out.flush();
}

/// Binds the config's listeners once the first snapshot is applied.
async fn bind_from_config(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    proxy: Arc<Proxy>,
    mut signal: Shutdown,
    grace: Duration,
    fatal: mpsc::Sender<DataPlaneError>,
) {
    let first = tokio::select! {
        first = snapshots.wait_for(Option::is_some) => first.ok().and_then(|s| s.clone()),
        () = signal.wait() => return,
    };
    let Some(first) = first else { return };
    let wanted = listener_addrs(&first);
    let mut listeners = JoinSet::new();
    for addr in &wanted {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                announce("proxy", listener.local_addr().unwrap_or(*addr));
                listeners.spawn(serve_proxy(listener, proxy.clone(), signal.clone(), grace));
            }
            Err(source) => {
                let _ = fatal
                    .send(DataPlaneError::Bind {
                        role: "proxy",
                        addr: *addr,
                        source,
                    })
                    .await;
                return;
            }
        }
    }
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = snapshots.borrow_and_update().as_ref().map(|s| listener_addrs(s));
                if now.is_some_and(|now| now != wanted) {
                    tracing::warn!("the config's listeners changed; restart the data plane to bind them");
                }
            }
            () = signal.wait() => break,
        }
    }
    while listeners.join_next().await.is_some() {}
}

fn listener_addrs(snapshot: &Snapshot) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = snapshot
        .config()
        .listeners
        .iter()
        .filter_map(|l| l.address.parse().ok())
        .collect();
    if addrs.is_empty() {
        vec![DEFAULT_PROXY_ADDR]
    } else {
        addrs
    }
}
