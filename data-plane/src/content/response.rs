//! Answers built from [`Prepared`] content: status and headers from the
//! rule, a strong ETag, Last-Modified, conditional requests (304), one byte
//! range (206/416), HEAD, and gzip/brotli negotiated from Accept-Encoding.
//! Everything costly (hash, compressed variants, header values) is computed
//! once when the content is prepared, not per request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::compress;
use crate::proxy::body::ProxyBody;

/// Content ready to answer with; shared by every request of a snapshot.
#[derive(Debug)]
pub struct Prepared {
    pub body: Bytes,
    pub content_type: HeaderValue,
    /// Whole seconds: HTTP dates have no finer resolution.
    pub last_modified: SystemTime,
    last_modified_value: HeaderValue,
    etag: HeaderValue,
    gzip: Option<Variant>,
    br: Option<Variant>,
    /// Byte ranges are offered (file and remote sources).
    ranges: bool,
}

/// A compressed form of the body with its own strong ETag.
#[derive(Debug)]
struct Variant {
    body: Bytes,
    etag: HeaderValue,
}

impl Prepared {
    /// Hashes (unless `sha256` is given) and compresses: blocking, call off
    /// the runtime for large bodies.
    pub fn new(
        body: Bytes,
        sha256: Option<String>,
        content_type: HeaderValue,
        last_modified: SystemTime,
        ranges: bool,
    ) -> Self {
        let sha256 = sha256.unwrap_or_else(|| crate::cache::sha256_hex(&body));
        // 128 bits of the digest identify the content well enough.
        let tag = &sha256[..sha256.len().min(32)];
        let etag = header(&format!("\"{tag}\""));
        let compressible = compress::worth_compressing(&content_type, body.len());
        let variant = |encoded: Option<Bytes>, suffix: &str| {
            encoded
                .filter(|e| e.len() < body.len())
                .map(|body| Variant {
                    body,
                    etag: header(&format!("\"{tag}-{suffix}\"")),
                })
        };
        let gzip = if compressible {
            variant(compress::gzip(&body), "gz")
        } else {
            None
        };
        let br = if compressible {
            variant(compress::brotli(&body), "br")
        } else {
            None
        };
        let secs = last_modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last_modified = UNIX_EPOCH + Duration::from_secs(secs);
        Self {
            last_modified_value: header(&httpdate::fmt_http_date(last_modified)),
            body,
            content_type,
            last_modified,
            etag,
            gzip,
            br,
            ranges,
        }
    }

    /// Whether compressed variants exist.
    #[cfg(test)]
    pub fn compressed(&self) -> (bool, bool) {
        (self.gzip.is_some(), self.br.is_some())
    }
}

/// Builds from strings that are valid header values by construction.
fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The answer to `method` with `req` headers from prepared content, with
/// the rule's `status` and extra `headers` (which may override the type).
pub fn respond(
    p: &Prepared,
    status: StatusCode,
    extra: &HeaderMap,
    method: &Method,
    req: &HeaderMap,
) -> Response<ProxyBody> {
    let mut headers = HeaderMap::with_capacity(extra.len() + 8);
    headers.insert(CONTENT_TYPE, p.content_type.clone());
    headers.insert(LAST_MODIFIED, p.last_modified_value.clone());
    if p.gzip.is_some() || p.br.is_some() {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    for (name, value) in extra {
        headers.insert(name.clone(), value.clone());
    }
    // Conditional requests and ranges only make sense for a plain success;
    // a 503 maintenance page is always sent whole.
    let plain = status == StatusCode::OK && (method == Method::GET || method == Method::HEAD);
    if plain && not_modified(p, req) {
        headers.insert(ETAG, p.etag.clone());
        headers.remove(CONTENT_TYPE);
        return build(StatusCode::NOT_MODIFIED, headers, Bytes::new(), false);
    }
    if plain && p.ranges {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(spec) = req.get(RANGE).filter(|_| if_range_holds(p, req)) {
            let len = p.body.len() as u64;
            match parse_range(spec.as_bytes(), len) {
                RangeAnswer::Ignore => {}
                RangeAnswer::Unsatisfiable => {
                    headers.insert(CONTENT_RANGE, header(&format!("bytes */{len}")));
                    headers.insert(ETAG, p.etag.clone());
                    return build(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        headers,
                        Bytes::new(),
                        false,
                    );
                }
                RangeAnswer::Range(start, end) => {
                    headers.insert(CONTENT_RANGE, header(&format!("bytes {start}-{end}/{len}")));
                    headers.insert(ETAG, p.etag.clone());
                    // In range: `parse_range` keeps end < len.
                    let body = p.body.slice(start as usize..=end as usize);
                    return build(
                        StatusCode::PARTIAL_CONTENT,
                        headers,
                        body,
                        method == Method::HEAD,
                    );
                }
            }
        }
    }
    let (body, etag) = match negotiate(p, req) {
        Some((encoding, v)) => {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
            (v.body.clone(), v.etag.clone())
        }
        None => (p.body.clone(), p.etag.clone()),
    };
    headers.insert(ETAG, etag);
    build(status, headers, body, method == Method::HEAD)
}

/// A response whose Content-Length is always explicit, so HEAD announces
/// the length of the body it leaves out.
fn build(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    head: bool,
) -> Response<ProxyBody> {
    if status != StatusCode::NOT_MODIFIED {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    }
    let body = if head { Bytes::new() } else { body };
    let mut response = Response::new(ProxyBody::Full(Some(body)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); tags are
/// compared weakly, so a compressed variant's tag matches its content.
fn not_modified(p: &Prepared, req: &HeaderMap) -> bool {
    if let Some(inm) = req.get(IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        let ours = p.etag.to_str().unwrap_or("").trim_matches('"');
        return inm.split(',').any(|tag| {
            let tag = tag.trim();
            if tag == "*" {
                return true;
            }
            let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
            let tag = tag
                .strip_suffix("-gz")
                .or_else(|| tag.strip_suffix("-br"))
                .unwrap_or(tag);
            tag == ours
        });
    }
    req.get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| p.last_modified <= since)
}

/// If-Range: the range applies only when the validator still matches
/// (strong comparison for tags, exact date otherwise).
fn if_range_holds(p: &Prepared, req: &HeaderMap) -> bool {
    let Some(v) = req.get(IF_RANGE) else {
        return true;
    };
    if v.as_bytes().starts_with(b"\"") {
        return v == p.etag;
    }
    v.to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|d| d == p.last_modified)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// Not a single byte range we serve: answer with the whole body.
    Ignore,
    Unsatisfiable,
    /// Inclusive bounds.
    Range(u64, u64),
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against a body of `len`.
/// Several ranges are answered with the whole body (allowed by RFC 9110).
pub(crate) fn parse_range(spec: &[u8], len: u64) -> RangeAnswer {
    let Some(spec) = std::str::from_utf8(spec)
        .ok()
        .and_then(|s| s.trim().strip_prefix("bytes="))
    else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAnswer::Ignore,
        (true, false) => match num(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Range(len.saturating_sub(n), len - 1),
            None => RangeAnswer::Ignore,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeAnswer::Ignore;
            };
            let end = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            match end {
                None => RangeAnswer::Ignore,
                Some(end) if end < start => RangeAnswer::Ignore,
                Some(_) if start >= len => RangeAnswer::Unsatisfiable,
                Some(end) => RangeAnswer::Range(start, end.min(len - 1)),
            }
        }
    }
}

/// The best encoding the client accepts among the variants we have:
/// brotli first (smaller), then gzip; `q=0` refuses one.
fn negotiate<'a>(p: &'a Prepared, req: &HeaderMap) -> Option<(&'static str, &'a Variant)> {
    if p.gzip.is_none() && p.br.is_none() {
        return None;
    }
    let accept = req.get(ACCEPT_ENCODING)?.to_str().ok()?;
    let (mut br, mut gzip, mut star) = (None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let ok = |q: Option<f32>| q.or(star).is_some_and(|q| q > 0.0);
    if ok(br) {
        if let Some(v) = &p.br {
            return Some(("br", v));
        }
    }
    if ok(gzip) {
        if let Some(v) = &p.gzip {
            return Some(("gzip", v));
        }
    }
    None
}
