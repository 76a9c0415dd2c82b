//! Precomputed gzip and brotli variants of text-like content. Bodies are
//! compressed once per content version, never per request.

use std::io::Write;

use bytes::Bytes;
use http::HeaderValue;

/// Smaller bodies gain nothing from compression.
const MIN_SIZE: usize = 256;
/// Larger bodies are sent as they are: compressing them once per version
/// would cost seconds and memory for little gain (and ranges need identity).
pub const MAX_SIZE: usize = 8 << 20;
/// Brotli quality: 5 compresses close to the maximum at a fraction of the
/// time of 11.
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW: u32 = 22;

/// Text, JSON, JavaScript, XML and SVG compress well; images, archives and
/// video are compressed already.
pub fn worth_compressing(content_type: &HeaderValue, len: usize) -> bool {
    if !(MIN_SIZE..=MAX_SIZE).contains(&len) {
        return false;
    }
    let ct = content_type.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "image/svg+xml"
                | "application/wasm"
        )
}

pub fn gzip(data: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3),
        flate2::Compression::default(),
    );
    encoder.write_all(data).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

pub fn brotli(data: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(data.len() / 3);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
        writer.write_all(data).ok()?;
        writer.flush().ok()?;
    }
    Some(Bytes::from(out))
}
