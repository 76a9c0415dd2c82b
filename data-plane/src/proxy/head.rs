//! `limits.max_header_bytes` for HTTP/1, checked exactly on every parsed
//! request head.
//!
//! The size of a head is its request line plus its header lines plus the
//! blank line, each field counted as `name: value\r\n`: the bytes on the
//! wire for the usual formatting (whitespace around values is not kept by
//! the parser, so it is not counted). hyper's read buffer bounds the head
//! too, but only approximately and never below 8 KiB, so the proxy checks
//! the parsed head itself; hyper's own 431 remains for heads that do not
//! even fit its buffer. HTTP/2 heads are bounded by the header list size
//! the h2 codec enforces (RFC 9113: 32 bytes of overhead per field).

use http::{Request, Version};

/// hyper's smallest HTTP/1 read buffer (it panics below).
pub const HYPER_MIN_BUF: u64 = 8192;

/// Whether an HTTP/1 request head is larger than `limit` bytes.
/// Stops counting as soon as the limit is passed.
pub fn over_limit<B>(req: &Request<B>, limit: u64) -> bool {
    if !matches!(
        req.version(),
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    ) {
        return false;
    }
    let uri = req.uri();
    // The request target as sent: origin-form is the path and query;
    // absolute-form and authority-form carry the authority too.
    let mut target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if let Some(authority) = uri.authority() {
        target += authority.as_str().len();
        if let Some(scheme) = uri.scheme() {
            target += scheme.as_str().len() + "://".len();
        }
    }
    // `METHOD target HTTP/1.1\r\n` and the final `\r\n`.
    let mut size = (req.method().as_str().len() + 1 + target + 1 + 8 + 2 + 2) as u64;
    if size > limit {
        return true;
    }
    for (name, value) in req.headers() {
        size += (name.as_str().len() + 2 + value.len() + 2) as u64;
        if size > limit {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The wire size of the same head, formatted the usual way.
    fn wire(target: &str, headers: &[(&str, &str)]) -> u64 {
        let mut s = format!("GET {target} HTTP/1.1\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.len() as u64
    }

    #[test]
    fn the_limit_is_the_wire_size_of_the_head() {
        let pad = "p".repeat(700);
        let headers = [("host", "example.com"), ("x-pad", pad.as_str())];
        for target in ["/a/b?c=d", "http://example.com:8080/x?y", "*"] {
            let req = request(target, &headers);
            let size = wire(target, &headers);
            assert!(!over_limit(&req, size), "{target}: exactly at the limit");
            assert!(over_limit(&req, size - 1), "{target}: one byte over");
        }
    }

    #[test]
    fn repeated_fields_count_once_each_and_http2_is_left_to_the_codec() {
        let headers = [("a", "1"), ("a", "2")];
        let req = request("/", &headers);
        let size = wire("/", &headers);
        assert!(!over_limit(&req, size));
        assert!(over_limit(&req, size - 1));
        let mut h2 = request("/", &headers);
        *h2.version_mut() = Version::HTTP_2;
        assert!(!over_limit(&h2, 1));
    }
}
