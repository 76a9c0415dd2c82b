//! A server's response head and how its body is framed (RFC 9112 §6.3).

use std::mem::MaybeUninit;
use std::ops::Range;

use arrayvec::ArrayVec;
use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::Http1Error;

/// Headers accepted in one response head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Bytes accepted in one response head.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Room in a parsed head's header map. A proxy's response map lives on:
/// hyper's server clears it and parses the client's next request into it,
/// where the forwarding headers are then added. Room for both means no
/// map grows on the way.
const HEADER_ROOM: usize = 24;

/// How the body after a response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD request, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `buf`, the answer to a
/// `method` request. `Ok(None)`: the head is not complete yet (read more).
/// On success the head's bytes are split off `buf` (the header values
/// share them, uncopied) and what follows, the body, stays.
pub fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, Http1Error> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    // Where each name and value lies in `buf`, as [start, end] pairs
    // (left uninitialised beyond what is parsed).
    let mut ranges = ArrayVec::<[u32; 4], MAX_HEADERS>::new();
    let base = buf.as_ptr() as usize;
    let (head_len, code, minor) = {
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        match parsed {
            Ok(httparse::Status::Complete(len)) => {
                for header in response.headers.iter() {
                    // Never full: httparse fills at most MAX_HEADERS slots.
                    ranges
                        .try_push(header_range(base, header))
                        .map_err(|_| Http1Error::Head(httparse::Error::TooManyHeaders))?;
                }
                (
                    len,
                    response.code.unwrap_or(0),
                    response.version.unwrap_or(1),
                )
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(Http1Error::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                })
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) if buf.len() > MAX_HEAD_BYTES => {
                return Err(Http1Error::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                })
            }
            Err(e) => return Err(Http1Error::Head(e)),
        }
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(Http1Error::HeadTooLarge {
            limit: MAX_HEAD_BYTES,
        });
    }
    let status =
        StatusCode::from_u16(code).map_err(|_| Http1Error::Head(httparse::Error::Status))?;
    let head = buf.split_to(head_len).freeze();
    let mut headers = HeaderMap::with_capacity(ranges.len().max(HEADER_ROOM));
    // The headers that decide framing and reuse, noted on the way.
    let mut seen = Seen::default();
    for [name_start, name_end, value_start, value_end] in &ranges {
        let bytes = head
            .get(*name_start as usize..*name_end as usize)
            .unwrap_or_default();
        let name = HeaderName::from_bytes(bytes).map_err(|_| invalid(bytes))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(*value_start as usize..*value_end as usize))
                .map_err(|_| invalid(name.as_str().as_bytes()))?;
        if name == CONTENT_LENGTH {
            seen.content_length = true;
        } else if name == TRANSFER_ENCODING {
            seen.transfer_encoding = true;
        } else if name == CONNECTION {
            seen.connection = true;
        }
        headers.append(name, value);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (framing, mut keep_alive) = framing(&headers, &seen, status, method)?;
    keep_alive &= if seen.connection {
        persistent(&headers, version)
    } else {
        version == Version::HTTP_11
    };
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// Where a parsed header's name and value lie in the buffer starting at
/// `base`: `[name start, name end, value start, value end]`.
pub(super) fn header_range(base: usize, header: &httparse::Header<'_>) -> [u32; 4] {
    let name = offset(base, header.name.as_bytes());
    let value = offset(base, header.value);
    [name.start, name.end, value.start, value.end]
}

/// Where `part`, a slice of the buffer starting at address `base`, lies
/// in it (an empty part anywhere else counts as empty at the start).
pub(super) fn offset(base: usize, part: &[u8]) -> Range<u32> {
    let start = (part.as_ptr() as usize).checked_sub(base);
    match start.and_then(|s| u32::try_from(s).ok()) {
        Some(start) if !part.is_empty() => start..start.saturating_add(part.len() as u32),
        _ => 0..0,
    }
}

fn invalid(name: &[u8]) -> Http1Error {
    Http1Error::InvalidHeader {
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

/// Which of the headers read by [`framing`] and [`persistent`] are present.
#[derive(Debug, Default)]
struct Seen {
    content_length: bool,
    transfer_encoding: bool,
    connection: bool,
}

/// The body's framing, and whether it leaves the connection reusable.
fn framing(
    headers: &HeaderMap,
    seen: &Seen,
    status: StatusCode,
    method: &Method,
) -> Result<(BodyFraming, bool), Http1Error> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((BodyFraming::Empty, true));
    }
    if seen.transfer_encoding {
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        // With both framings the message is suspect (RFC 9112 §6.3):
        // chunked wins and the connection is not reused.
        let reusable = chunked && !seen.content_length;
        let framing = if chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        };
        return Ok((framing, reusable));
    }
    if !seen.content_length {
        return Ok((BodyFraming::UntilClose, false));
    }
    match content_length(headers)? {
        Some(0) => Ok((BodyFraming::Empty, true)),
        Some(n) => Ok((BodyFraming::Length(n), true)),
        None => Ok((BodyFraming::UntilClose, false)),
    }
}

/// The one length all `Content-Length` values (lists included) agree on.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Http1Error> {
    let mut found = None;
    for part in headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
    {
        let digits = part.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Http1Error::InvalidContentLength);
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(Http1Error::InvalidContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when
/// told `keep-alive`.
fn persistent(headers: &HeaderMap, version: Version) -> bool {
    let mut tokens = ConnectionTokens::default();
    for value in headers.get_all(CONNECTION) {
        tokens.read(value.as_bytes());
    }
    tokens.persistent(version)
}

/// The `Connection` tokens that decide whether a connection persists.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
}

impl ConnectionTokens {
    /// Notes the tokens of one `Connection` value.
    pub(super) fn read(&mut self, value: &[u8]) {
        // One pass over the tokens (a new connection per request sends
        // this header every time).
        for token in tokens(value) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// HTTP/1.1 persists unless told `close`; HTTP/1.0 only when told
    /// `keep-alive`.
    pub(super) fn persistent(self, version: Version) -> bool {
        match version {
            Version::HTTP_10 => self.keep_alive,
            _ => !self.close,
        }
    }
}

/// Whether a comma-separated header value lists `token` (any case).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The tokens of a comma-separated header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, Http1Error> {
        let mut buf = BytesMut::from(raw);
        parse_response_head(&mut buf, &method)
    }

    fn head(raw: &str) -> ResponseHead {
        match parse(raw, Method::GET) {
            Ok(Some(head)) => head,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn a_complete_head_is_split_off_and_the_body_stays() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nhello",
        );
        let head = parse_response_head(&mut buf, &Method::GET)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no head"));
        assert_eq!(&buf[..], b"hello");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, BodyFraming::Length(5));
        assert!(head.keep_alive);
        let cookies: Vec<_> = head.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn an_incomplete_head_asks_for_more_at_every_cut() {
        let raw = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(
                matches!(parse(&raw[..cut], Method::GET), Ok(None)),
                "cut at {cut}"
            );
        }
        assert_eq!(head(raw).framing, BodyFraming::Empty);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(head(chunked).framing, BodyFraming::Chunked);
        assert!(head(chunked).keep_alive);
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(both).framing, BodyFraming::Chunked);
        assert!(!head(both).keep_alive);
        let not_chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(head(not_chunked).framing, BodyFraming::UntilClose);
        assert!(!head(not_chunked).keep_alive);
        let bare = "HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(head(bare).framing, BodyFraming::UntilClose);
        assert!(!head(bare).keep_alive);
        let listed = "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n";
        assert_eq!(head(listed).framing, BodyFraming::Length(7));
        for status in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\nContent-Length: 9\r\n\r\n");
            assert_eq!(head(&raw).framing, BodyFraming::Empty, "{status}");
        }
        let to_head = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert!(matches!(to_head, Ok(Some(h)) if h.framing == BodyFraming::Empty));
    }

    #[test]
    fn connection_reuse_follows_the_version_and_connection_header() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_a_head_leaves_the_rest(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(_)) = parse_response_head(&mut buf, &Method::GET) {
                proptest::prop_assert!(buf.len() < bytes.len());
                proptest::prop_assert!(bytes.ends_with(&buf));
            }
        }
    }

    #[test]
    fn bad_heads_are_errors_that_say_what() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        ] {
            assert_eq!(
                parse(raw, Method::GET).err(),
                Some(Http1Error::InvalidContentLength),
                "{raw:?}"
            );
        }
        assert!(matches!(
            parse("HTTP/1.1 2x0 OK\r\n\r\n", Method::GET),
            Err(Http1Error::Head(_))
        ));
        assert!(matches!(
            parse("SMTP ready\r\n\r\n", Method::GET),
            Err(Http1Error::Head(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(matches!(
            parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), Method::GET),
            Err(Http1Error::Head(httparse::Error::TooManyHeaders))
        ));
        let long = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(&long, Method::GET).err(),
            Some(Http1Error::HeadTooLarge {
                limit: MAX_HEAD_BYTES
            })
        );
    }
}
