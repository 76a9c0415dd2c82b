//! The request head an upstream server receives.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};

/// Appends `method target HTTP/1.1`, the headers and the framing of a body
/// of `body_len` bytes (sent whole after the head) to `out`.
///
/// The body's length is the only framing written: any `Content-Length` or
/// `Transfer-Encoding` among `headers` is left out. A method that carries a
/// body gets `content-length: 0` when it is empty, others none.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body_len: usize,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let carries_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if body_len > 0 || carries_body {
        out.extend_from_slice(b"content-length: ");
        let mut digits = [0u8; 20];
        out.extend_from_slice(decimal(body_len as u64, &mut digits));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without going through `fmt`.
pub(super) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn head(method: Method, headers: &HeaderMap, body_len: usize) -> String {
        let mut out = Vec::new();
        encode_request_head(&mut out, &method, "/a?b=1", headers, body_len);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn writes_the_request_line_every_header_value_and_a_blank_line() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("origin.test"));
        headers.append("x-tag", HeaderValue::from_static("one"));
        headers.append("x-tag", HeaderValue::from_static("two"));
        assert_eq!(
            head(Method::GET, &headers, 0),
            "GET /a?b=1 HTTP/1.1\r\nhost: origin.test\r\nx-tag: one\r\nx-tag: two\r\n\r\n"
        );
    }

    #[test]
    fn the_body_length_replaces_any_framing_header() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("99"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        assert_eq!(
            head(Method::PUT, &headers, 12),
            "PUT /a?b=1 HTTP/1.1\r\ncontent-length: 12\r\n\r\n"
        );
        assert_eq!(
            head(Method::POST, &HeaderMap::new(), 0),
            "POST /a?b=1 HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            head(Method::DELETE, &headers, 0),
            "DELETE /a?b=1 HTTP/1.1\r\n\r\n"
        );
    }

    proptest! {
        #[test]
        fn decimal_matches_display(n in any::<u64>()) {
            let mut digits = [0u8; 20];
            let expected = n.to_string();
            prop_assert_eq!(decimal(n, &mut digits), expected.as_bytes());
        }
    }
}
