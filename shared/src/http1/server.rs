//! The client side of HTTP/1.1 as the proxy's own server path sees it: a
//! request head parsed into `http` types when the request is one the path
//! serves itself (no body, no upgrade), and the response head written back
//! with the body's framing.

use std::mem::MaybeUninit;
use std::ops::Range;

use arrayvec::ArrayVec;
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use super::response::{has_token, header_range, offset, ConnectionTokens};
use super::MAX_HEADERS;

/// Room left in a request's header map for the headers a proxy adds
/// (`X-Forwarded-*`, `Via`), so adding them does not grow it.
const PROXY_ROOM: usize = 6;

/// What the bytes at the front of a client's buffer hold.
// Returned and matched at once per request: boxing the head would cost an
// allocation per request to save a move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ParsedRequest {
    /// A whole bodiless request head, split off the buffer.
    Complete(RequestHead),
    /// Not a whole head yet: read more.
    Partial,
    /// Something the general server must handle (a request body, an
    /// upgrade, `Expect`, CONNECT, the HTTP/2 preface, too many headers) or
    /// answer as an error (a malformed head). The buffer is left as it was.
    Unsupported,
}

/// A request head with no body.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The client allows another request on the connection after this one.
    pub keep_alive: bool,
}

/// Parses the request head at the front of `buf`. On `Complete` the head's
/// bytes are split off `buf` (header values share them) and whatever
/// follows (a pipelined request) stays; the headers go into `headers`
/// (taken, so a map cleared by the caller is reused with its capacity).
pub fn parse_request_head(buf: &mut BytesMut, headers: &mut HeaderMap) -> ParsedRequest {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    // Where each name and value lies in `buf`, as [start, end] pairs
    // (left uninitialised beyond what is parsed: zeroing 1.6 KB per head
    // showed in profiles).
    let mut ranges = ArrayVec::<[u32; 4], MAX_HEADERS>::new();
    let base = buf.as_ptr() as usize;
    // `Connection` tokens, read while the headers are classified.
    let mut connection = ConnectionTokens::default();
    let (head_len, method, target, minor) = {
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return ParsedRequest::Partial,
            Err(_) => return ParsedRequest::Unsupported,
        };
        for header in request.headers.iter() {
            match classify(header) {
                Field::NeedsGeneralServer => return ParsedRequest::Unsupported,
                Field::Connection => connection.read(header.value),
                Field::Other => {}
            }
            // Never full: httparse fills at most MAX_HEADERS slots.
            if ranges.try_push(header_range(base, header)).is_err() {
                return ParsedRequest::Unsupported;
            }
        }
        let method = match request.method.map(|m| Method::from_bytes(m.as_bytes())) {
            Some(Ok(m)) if m != Method::CONNECT => m,
            _ => return ParsedRequest::Unsupported,
        };
        let target = offset(base, request.path.unwrap_or_default().as_bytes());
        (len, method, target, request.version.unwrap_or(1))
    };
    let head = buf.split_to(head_len).freeze();
    match build(&head, method, target, minor, &ranges, connection, headers) {
        Some(parsed) => ParsedRequest::Complete(parsed),
        None => {
            // Rare (a target `http::Uri` refuses): put the bytes back.
            let mut restored = BytesMut::with_capacity(head.len() + buf.len());
            restored.extend_from_slice(&head);
            restored.extend_from_slice(buf);
            *buf = restored;
            ParsedRequest::Unsupported
        }
    }
}

/// What a request header means for the direct path.
enum Field {
    /// A body (`Transfer-Encoding`, a `Content-Length` other than 0), an
    /// upgrade, or `Expect`: the request is one for the general server.
    NeedsGeneralServer,
    Connection,
    Other,
}

fn classify(header: &httparse::Header<'_>) -> Field {
    let name = header.name.as_bytes();
    let general = match name.len() {
        6 => name.eq_ignore_ascii_case(b"expect"),
        7 => name.eq_ignore_ascii_case(b"upgrade"),
        10 if name.eq_ignore_ascii_case(b"connection") => return Field::Connection,
        14 => name.eq_ignore_ascii_case(b"content-length") && header.value.trim_ascii() != b"0",
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    };
    if general {
        Field::NeedsGeneralServer
    } else {
        Field::Other
    }
}

fn build(
    head: &Bytes,
    method: Method,
    target: Range<u32>,
    minor: u8,
    ranges: &[[u32; 4]],
    connection: ConnectionTokens,
    headers: &mut HeaderMap,
) -> Option<RequestHead> {
    let slice = |r: Range<u32>| head.slice(r.start as usize..r.end as usize);
    let uri = Uri::from_maybe_shared(slice(target)).ok()?;
    let mut map = std::mem::take(headers);
    map.clear();
    // One allocation for a fresh map, with room for what a proxy adds.
    map.reserve(ranges.len() + PROXY_ROOM);
    for [name_start, name_end, value_start, value_end] in ranges {
        let name = head.get(*name_start as usize..*name_end as usize)?;
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_maybe_shared(slice(*value_start..*value_end)).ok()?;
        map.append(name, value);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let keep_alive = connection.persistent(version);
    Some(RequestHead {
        method,
        uri,
        version,
        headers: map,
        keep_alive,
    })
}

/// How a response body is sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body follows (a HEAD request, 1xx, 204, 304); `Content-Length`
    /// is the response's own, else this length of the body it describes.
    Bodiless {
        length: Option<u64>,
    },
    Length(u64),
    Chunked,
    /// Ended by closing the connection (an HTTP/1.0 client, length unknown).
    UntilClose,
}

/// How the body of a `status` response to a `method` request is framed,
/// given the body's length when known and the client's HTTP version.
pub fn response_framing(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    body_len: Option<u64>,
    client: Version,
) -> ResponseFraming {
    if *method == Method::HEAD {
        return ResponseFraming::Bodiless {
            length: body_len.filter(|_| !headers.contains_key(CONTENT_LENGTH)),
        };
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return ResponseFraming::Bodiless { length: None };
    }
    if let Some(n) = body_len {
        return ResponseFraming::Length(n);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) => ResponseFraming::Length(n),
        None if client == Version::HTTP_10 => ResponseFraming::UntilClose,
        None => ResponseFraming::Chunked,
    }
}

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// Nothing: the default of the client's version holds.
    Default,
    Close,
    /// For an HTTP/1.0 client that asked for it.
    KeepAlive,
}

/// Appends the response head to `out`: status line, the response's
/// headers (without hop-by-hop framing ones, which `framing` replaces),
/// `date` when the response has none, and the connection's fate:
/// `connection`, or `Close` if the response itself asks to close. Returns
/// the connection header written.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    connection: ConnectionHeader,
    date: &[u8],
) -> ConnectionHeader {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_length = matches!(framing, ResponseFraming::Bodiless { .. });
    let mut has_date = false;
    let mut connection = connection;
    for (name, value) in headers {
        if name == CONNECTION {
            if has_token(value.as_bytes(), b"close") {
                connection = ConnectionHeader::Close;
            }
            continue;
        }
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && !keep_length) {
            continue;
        }
        has_date |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ResponseFraming::Bodiless { length: Some(n) } | ResponseFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            let mut digits = [0u8; 20];
            out.extend_from_slice(super::request::decimal(n, &mut digits));
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ResponseFraming::Bodiless { length: None } | ResponseFraming::UntilClose => {}
    }
    match connection {
        ConnectionHeader::Default => {}
        ConnectionHeader::Close => out.extend_from_slice(b"connection: close\r\n"),
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    connection
}

/// Appends the size line of a chunk of `len` bytes (`len` in hex, CRLF).
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    let mut n = len;
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests;
