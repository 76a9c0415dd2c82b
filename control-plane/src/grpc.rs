//! The gRPC side of the control plane: the data-plane `ControlPlane` service
//! (Sync stream, FetchBlob) and the server that hosts it.

mod admin;
mod session;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_admin;
#[cfg(test)]
mod tests_delta;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use switchyard_shared::proto::{self, control_plane_server, node_message};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use admin::AdminGrpc;

use crate::content::BlobError;
use crate::service::Service;

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// FetchBlob chunk size.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Largest message accepted (a config with many thousand rules is large).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The encoded descriptors of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));

/// Reflection over the Switchyard services (and the reflection service).
pub fn reflection_server() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// Implements `switchyard.v1.ControlPlane`.
#[derive(Clone)]
pub struct ControlPlaneGrpc {
    service: Service,
    /// Flips to true on shutdown; sessions end so the server can drain.
    shutdown: watch::Receiver<bool>,
}

impl ControlPlaneGrpc {
    pub fn new(service: Service, shutdown: watch::Receiver<bool>) -> Self {
        Self { service, shutdown }
    }

    pub fn into_server(self) -> control_plane_server::ControlPlaneServer<Self> {
        control_plane_server::ControlPlaneServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl control_plane_server::ControlPlane for ControlPlaneGrpc {
    type SyncStream = BoxStream<proto::ControlMessage>;

    async fn sync(
        &self,
        request: Request<Streaming<proto::NodeMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello received in time"))??;
        let hello = match first.and_then(|m| m.msg) {
            Some(node_message::Msg::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if hello.node_id.trim().is_empty() {
            return Err(Status::invalid_argument("Hello.node_id must not be empty"));
        }
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(session::run(
            self.service.clone(),
            hello,
            inbound,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type FetchBlobStream = BoxStream<proto::BlobChunk>;

    async fn fetch_blob(
        &self,
        request: Request<proto::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        let sha256 = request.into_inner().sha256;
        let service = self.service.clone();
        let wanted = sha256.clone();
        let blob = tokio::task::spawn_blocking(move || service.blobs().verified(&wanted))
            .await
            .map_err(|e| Status::internal(format!("background task failed: {e}")))?
            .map_err(|e| match e {
                BlobError::Unknown => Status::not_found(format!("blob {sha256}: {e}")),
                BlobError::Changed => Status::failed_precondition(format!("blob {sha256}: {e}")),
                BlobError::Io(_) => Status::internal(format!("blob {sha256}: {e}")),
            })?;
        let file = tokio::fs::File::open(&blob.path)
            .await
            .map_err(|e| Status::internal(format!("blob {sha256}: cannot open: {e}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(stream_blob(file, blob.sha256, blob.size, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Streams a file in chunks while hashing it; if the bytes sent do not hash
/// to the advertised sha256 (the file changed meanwhile) the stream ends with
/// an error instead of passing stale content off as the blob.
async fn stream_blob(
    mut file: tokio::fs::File,
    sha256: String,
    size: u64,
    tx: mpsc::Sender<Result<proto::BlobChunk, Status>>,
) {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut first = true;
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("read error: {e}"))))
                        .await;
                    return;
                }
            }
        }
        buf.truncate(filled);
        if filled == 0 && !first {
            break;
        }
        hasher.update(&buf);
        let chunk = proto::BlobChunk {
            data: buf,
            total_size: if first { size } else { 0 },
        };
        first = false;
        if tx.send(Ok(chunk)).await.is_err() {
            return; // the client left
        }
        if filled < CHUNK_SIZE {
            break;
        }
    }
    if hex::encode(hasher.finalize()) != sha256 {
        let _ = tx
            .send(Err(Status::data_loss(
                "the file changed while it was being sent; fetch the new version",
            )))
            .await;
    }
}
