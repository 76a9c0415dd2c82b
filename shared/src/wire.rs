//! `switchyard.v1.Snapshot`, written by hand (prost's `extern_path` maps the
//! generated code to it) so a whole snapshot can be sent with its config
//! already encoded: the control plane encodes a version once and every
//! session shares the bytes, instead of cloning and encoding thousands of
//! rules per node. On the wire it is the message `sync.proto` describes.

use std::fmt;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::proto;

/// One config version sent whole (`Snapshot` in `sync.proto`).
#[derive(Clone, PartialEq, Default)]
pub struct Snapshot {
    pub version: u64,
    /// Content hash of the config (hex sha256 of its canonical encoding).
    pub hash: String,
    /// The config; decoding always fills this.
    pub config: Option<proto::Config>,
    /// The encoded `Config` message; when set it is sent instead of
    /// `config` (encoding only).
    pub encoded_config: Option<Bytes>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("hash", &self.hash)
            .field("config", &self.config)
            .field(
                "encoded_config",
                &self.encoded_config.as_ref().map(|b| b.len()),
            )
            .finish()
    }
}

const VERSION: u32 = 1;
const HASH: u32 = 2;
const CONFIG: u32 = 3;

impl Message for Snapshot {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.version != 0 {
            encoding::uint64::encode(VERSION, &self.version, buf);
        }
        if !self.hash.is_empty() {
            encoding::string::encode(HASH, &self.hash, buf);
        }
        // An embedded message and a bytes field share one wire form
        // (length-delimited), so the pre-encoded config goes out as is.
        match (&self.encoded_config, &self.config) {
            (Some(bytes), _) => encoding::bytes::encode(CONFIG, bytes, buf),
            (None, Some(config)) => encoding::message::encode(CONFIG, config, buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let field = match tag {
            VERSION => (
                "version",
                encoding::uint64::merge(wire_type, &mut self.version, buf, ctx),
            ),
            HASH => (
                "hash",
                encoding::string::merge(wire_type, &mut self.hash, buf, ctx),
            ),
            CONFIG => (
                "config",
                encoding::message::merge(
                    wire_type,
                    self.config.get_or_insert_with(Default::default),
                    buf,
                    ctx,
                ),
            ),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        field.1.map_err(|mut e| {
            e.push("Snapshot", field.0);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let mut len = 0;
        if self.version != 0 {
            len += encoding::uint64::encoded_len(VERSION, &self.version);
        }
        if !self.hash.is_empty() {
            len += encoding::string::encoded_len(HASH, &self.hash);
        }
        len + match (&self.encoded_config, &self.config) {
            (Some(bytes), _) => encoding::bytes::encoded_len(CONFIG, bytes),
            (None, Some(config)) => encoding::message::encoded_len(CONFIG, config),
            (None, None) => 0,
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ContentSource};

    fn config() -> proto::Config {
        let c = Config {
            content_sources: vec![ContentSource::inline("s", "x")],
            ..Config::default()
        };
        proto::Config::from(&c)
    }

    #[test]
    fn pre_encoded_and_plain_configs_are_the_same_bytes() {
        let plain = Snapshot {
            version: 7,
            hash: "abc".into(),
            config: Some(config()),
            encoded_config: None,
        };
        let shared = Snapshot {
            config: None,
            encoded_config: Some(Bytes::from(config().encode_to_vec())),
            ..plain.clone()
        };
        assert_eq!(plain.encode_to_vec(), shared.encode_to_vec());
        assert_eq!(shared.encoded_len(), shared.encode_to_vec().len());
        let decoded = Snapshot::decode(shared.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, plain);
        assert_eq!(
            Snapshot::decode(Snapshot::default().encode_to_vec().as_slice()).ok(),
            Some(Snapshot::default())
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_input_names_the_field() {
        let mut bytes = Snapshot {
            version: 1,
            ..Snapshot::default()
        }
        .encode_to_vec();
        encoding::string::encode(9, &"later".to_owned(), &mut bytes);
        assert_eq!(Snapshot::decode(bytes.as_slice()).map(|s| s.version), Ok(1));
        // Field 3 with a varint wire type.
        let err = Snapshot::decode(&[0x18, 0x01][..]).expect_err("bad wire type");
        assert!(err.to_string().contains("Snapshot.config"), "{err}");
    }
}
