//! A fake control plane serving the real `switchyard.v1.ControlPlane` gRPC
//! API on loopback. It runs on its own thread and runtime so `stop` can
//! kill it like a crash (every connection dropped at once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use switchyard_shared::convert::file_blobs;
use switchyard_shared::parse::{config_hash, parse_yaml};
use switchyard_shared::proto;
use switchyard_shared::proto::control_message::Msg as ControlMsg;
use switchyard_shared::proto::control_plane_server::{ControlPlane, ControlPlaneServer};
use switchyard_shared::proto::node_message::Msg as NodeMsg;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::support::{sha256_hex, wait_until};

type Outbound = mpsc::Sender<Result<proto::ControlMessage, Status>>;

/// What the fake knows and saw; survives restarts of the server.
#[derive(Default)]
pub struct FakeState {
    /// Every message received from nodes, in order.
    pub received: Mutex<Vec<proto::NodeMessage>>,
    /// The desired snapshot, sent to nodes that say Hello while behind.
    pub desired: Mutex<Option<proto::Snapshot>>,
    /// Blob bytes served by FetchBlob, by sha256 (tests may tamper).
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    streams: Mutex<Vec<Outbound>>,
}

impl FakeState {
    /// Sets the desired snapshot and pushes it to every open stream.
    pub async fn push(&self, snapshot: proto::Snapshot) {
        *lock(&self.desired) = Some(snapshot.clone());
        let streams: Vec<Outbound> = lock(&self.streams).clone();
        for tx in streams {
            let msg = proto::ControlMessage {
                msg: Some(ControlMsg::Snapshot(snapshot.clone())),
            };
            let _ = tx.send(Ok(msg)).await;
        }
    }

    /// Sends any message to every open stream (deltas, for instance).
    pub async fn send(&self, msg: ControlMsg) {
        let streams: Vec<Outbound> = lock(&self.streams).clone();
        for tx in streams {
            let msg = proto::ControlMessage {
                msg: Some(msg.clone()),
            };
            let _ = tx.send(Ok(msg)).await;
        }
    }

    /// Sends a command to every open stream.
    pub async fn command(&self, command: proto::Command) {
        let streams: Vec<Outbound> = lock(&self.streams).clone();
        for tx in streams {
            let msg = proto::ControlMessage {
                msg: Some(ControlMsg::Command(command.clone())),
            };
            let _ = tx.send(Ok(msg)).await;
        }
    }

    pub fn messages(&self) -> Vec<NodeMsg> {
        lock(&self.received)
            .iter()
            .filter_map(|m| m.msg.clone())
            .collect()
    }

    /// Waits (bounded) for a message matching `pred` and returns it.
    pub async fn wait_for<T>(&self, what: &str, pred: impl Fn(&NodeMsg) -> Option<T>) -> T {
        wait_until(what, || self.messages().iter().find_map(&pred)).await
    }

    pub async fn wait_ack(&self, version: u64) {
        self.wait_for(&format!("ack of version {version}"), |m| match m {
            NodeMsg::Ack(a) if a.version == version => Some(()),
            _ => None,
        })
        .await
    }

    pub async fn wait_nack(&self, version: u64) -> String {
        self.wait_for(&format!("nack of version {version}"), |m| match m {
            NodeMsg::Nack(n) if n.version == version => Some(n.error.clone()),
            _ => None,
        })
        .await
    }

    pub fn hellos(&self) -> Vec<proto::Hello> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                NodeMsg::Hello(h) => Some(h),
                _ => None,
            })
            .collect()
    }

    pub fn clear_received(&self) {
        lock(&self.received).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A snapshot of `yaml` at `version`; `files` are (path, bytes) for the
/// config's file sources, registered as blobs on `state`.
pub fn snapshot(
    state: &FakeState,
    version: u64,
    yaml: &str,
    files: &[(&str, &[u8])],
) -> proto::Snapshot {
    let config = match parse_yaml(yaml) {
        Ok(c) => c,
        Err(e) => panic!("test config does not parse: {e}"),
    };
    let hash = config_hash(&config);
    let mut proto_config = proto::Config::from(&config);
    for source in &mut proto_config.content_sources {
        if let Some(proto::content_source::Kind::File(f)) = &mut source.kind {
            let Some((_, data)) = files.iter().find(|(p, _)| *p == f.path) else {
                panic!("no test file for {}", f.path);
            };
            f.sha256 = sha256_hex(data);
            f.size = data.len() as u64;
            lock(&state.blobs).insert(f.sha256.clone(), data.to_vec());
        }
    }
    assert_eq!(file_blobs(&proto_config).len(), files.len());
    proto::Snapshot {
        version,
        hash,
        config: Some(proto_config),
        encoded_config: None,
    }
}

struct Service {
    state: Arc<FakeState>,
}

#[tonic::async_trait]
impl ControlPlane for Service {
    type SyncStream = ReceiverStream<Result<proto::ControlMessage, Status>>;
    type FetchBlobStream = ReceiverStream<Result<proto::BlobChunk, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<proto::NodeMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(NodeMsg::Hello(hello)) = &message.msg {
                    let desired = lock(&state.desired).clone();
                    if let Some(s) = desired {
                        if hello.last_applied_version != s.version || hello.hash != s.hash {
                            let msg = proto::ControlMessage {
                                msg: Some(ControlMsg::Snapshot(s)),
                            };
                            let _ = tx.send(Ok(msg)).await;
                        }
                    }
                    lock(&state.streams).push(tx.clone());
                }
                lock(&state.received).push(message);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_blob(
        &self,
        request: Request<proto::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        let sha = request.into_inner().sha256;
        let data = lock(&self.state.blobs)
            .get(&sha)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no blob {sha}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // Small chunks, so reassembly is exercised.
            let total = data.len() as u64;
            for (i, chunk) in data.chunks(7).enumerate() {
                let msg = proto::BlobChunk {
                    data: chunk.to_vec(),
                    total_size: if i == 0 { total } else { 0 },
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running fake control plane.
pub struct FakeCp {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCp {
    /// Starts on `addr` (port 0 for any) with `state`.
    pub fn start(addr: SocketAddr, state: Arc<FakeState>) -> FakeCp {
        let listener = match std::net::TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => panic!("fake control plane cannot bind {addr}: {e}"),
        };
        let _ = listener.set_nonblocking(true);
        let addr = listener.local_addr().unwrap_or(addr);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let service = Service {
            state: state.clone(),
        };
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => panic!("runtime: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => panic!("listener: {e}"),
                };
                let server = tonic::transport::Server::builder()
                    .add_service(ControlPlaneServer::new(service))
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = server => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime drops every connection task: a crash.
            drop(runtime);
        });
        FakeCp {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server and every connection; the state stays.
    pub fn stop(mut self) -> Arc<FakeState> {
        self.shutdown();
        lock(&self.state.streams).clear();
        self.state.clone()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeCp {
    fn drop(&mut self) {
        self.shutdown();
    }
}
