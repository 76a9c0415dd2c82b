//! What data planes receive: one immutable version of the config with its
//! file blobs resolved, in wire form, plus the delta from the version
//! before it (computed once here, sent to every node that runs that one).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use prost::Message;

use switchyard_shared::config::Config;
use switchyard_shared::proto;

use crate::content::Blob;

#[derive(Debug, Clone)]
pub struct SnapshotData {
    pub version: u64,
    pub hash: String,
    pub config: Arc<Config>,
    /// The wire form, with `FileContent.sha256/size` filled in.
    pub proto: proto::Config,
    /// Source name -> blob, for file sources.
    pub blobs: BTreeMap<String, Blob>,
    /// The change from the previous version, if there was one.
    pub delta: Option<Arc<proto::SnapshotDelta>>,
    /// `proto` encoded, on first need: every session sending the whole
    /// snapshot shares these bytes.
    encoded: OnceLock<Bytes>,
    /// Whether this process validated `config`: only then may later
    /// changes skip the checks of the rules they leave untouched (a config
    /// loaded from the store may predate a stricter validation).
    pub validated: bool,
}

impl SnapshotData {
    /// The snapshot of `config`; `previous` (the version it replaces) gives
    /// the delta.
    pub fn build(
        version: u64,
        hash: String,
        config: Config,
        blobs: BTreeMap<String, Blob>,
        previous: Option<&SnapshotData>,
        validated: bool,
    ) -> SnapshotData {
        let mut wire = proto::Config::from(&config);
        for source in &mut wire.content_sources {
            if let Some(proto::content_source::Kind::File(f)) = &mut source.kind {
                if let Some(blob) = blobs.get(&source.name) {
                    f.sha256.clone_from(&blob.sha256);
                    f.size = blob.size;
                }
            }
        }
        let delta = previous.filter(|p| p.version > 0).map(|p| {
            Arc::new(switchyard_shared::delta::diff(
                p.version, &p.hash, &p.proto, version, &hash, &wire,
            ))
        });
        SnapshotData {
            version,
            hash,
            config: Arc::new(config),
            proto: wire,
            blobs,
            delta,
            encoded: OnceLock::new(),
            validated,
        }
    }

    /// The whole snapshot as a Sync message, its config encoded once per
    /// version.
    pub fn full_message(&self) -> proto::ControlMessage {
        let encoded = self
            .encoded
            .get_or_init(|| Bytes::from(self.proto.encode_to_vec()));
        proto::ControlMessage {
            msg: Some(proto::control_message::Msg::Snapshot(proto::Snapshot {
                version: self.version,
                hash: self.hash.clone(),
                config: None,
                encoded_config: Some(encoded.clone()),
            })),
        }
    }

    /// The delta as a Sync message, when it applies on top of
    /// `base` (version, hash).
    pub fn delta_message(&self, base: (u64, &str)) -> Option<proto::ControlMessage> {
        let delta = self
            .delta
            .as_ref()
            .filter(|d| (d.base_version, d.base_hash.as_str()) == base)?;
        Some(proto::ControlMessage {
            msg: Some(proto::control_message::Msg::Delta((**delta).clone())),
        })
    }
}
