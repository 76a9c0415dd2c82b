use super::*;
use proptest::prelude::*;

const NOW: &[u8] = b"Thu, 26 Nov 2026 13:45:00 GMT";

fn parse(raw: &[u8]) -> (ParsedRequest, BytesMut) {
    let mut buf = BytesMut::from(raw);
    let parsed = parse_request_head(&mut buf, &mut HeaderMap::new());
    (parsed, buf)
}

fn complete(raw: &[u8]) -> (RequestHead, BytesMut) {
    match parse(raw) {
        (ParsedRequest::Complete(head), rest) => (head, rest),
        (other, _) => panic!("{:?} gave {other:?}", String::from_utf8_lossy(raw)),
    }
}

fn unsupported(raw: &[u8]) -> bool {
    let (parsed, rest) = parse(raw);
    // Left whole for the general server.
    matches!(parsed, ParsedRequest::Unsupported) && rest[..] == raw[..]
}

#[test]
fn a_bodiless_head_is_split_off_and_what_follows_stays() {
    let raw =
        b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\nX-Tag: one\r\nx-tag: two\r\n\r\nGET /next";
    let (head, rest) = complete(raw);
    assert_eq!(head.method, Method::GET);
    assert_eq!(head.uri, "/a/b?c=1");
    assert_eq!(head.version, Version::HTTP_11);
    assert!(head.keep_alive);
    assert_eq!(head.headers["host"], "example.test");
    let tags: Vec<_> = head.headers.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["one", "two"]);
    assert_eq!(&rest[..], b"GET /next");
}

#[test]
fn the_connection_default_follows_the_version() {
    let cases: [(&[u8], bool); 7] = [
        (
            b"GET / HTTP/1.0\r\nConnection: foo\r\nconnection: Keep-Alive\r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.1\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", false),
    ];
    for (raw, keep_alive) in cases {
        let (head, _) = complete(raw);
        assert_eq!(
            head.keep_alive,
            keep_alive,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn absolute_and_asterisk_targets_and_a_zero_length_are_served() {
    let (head, _) = complete(b"GET http://example.test/x HTTP/1.1\r\n\r\n");
    assert_eq!(head.uri.host(), Some("example.test"));
    assert_eq!(head.uri.path(), "/x");
    let (head, _) = complete(b"OPTIONS * HTTP/1.1\r\n\r\n");
    assert_eq!(head.uri, "*");
    let (head, _) = complete(b"POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.method, Method::POST);
}

#[test]
fn bodies_upgrades_and_odd_requests_go_to_the_general_server() {
    for raw in [
        &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        b"CONNECT example.test:443 HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
    ] {
        assert!(unsupported(raw), "{:?}", String::from_utf8_lossy(raw));
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(unsupported(&many));
}

#[test]
fn the_recycled_map_is_cleared_and_reused() {
    let mut recycled = HeaderMap::with_capacity(32);
    recycled.insert("x-old", HeaderValue::from_static("stale"));
    let capacity = recycled.capacity();
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]);
    let ParsedRequest::Complete(head) = parse_request_head(&mut buf, &mut recycled) else {
        panic!("not complete");
    };
    assert!(head.headers.get("x-old").is_none());
    assert_eq!(head.headers.len(), 1);
    assert!(head.headers.capacity() >= capacity);
}

fn encoded(
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
    framing: ResponseFraming,
    connection: ConnectionHeader,
) -> String {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(*k, HeaderValue::from_static(v));
    }
    let mut out = Vec::new();
    let _ = encode_response_head(&mut out, status, &map, framing, connection, NOW);

    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn a_response_head_carries_its_framing_and_a_date() {
    assert_eq!(
        encoded(
            StatusCode::OK,
            &[("content-type", "text/plain"), ("content-length", "99"), ("connection", "x")],
            ResponseFraming::Length(5),
            ConnectionHeader::Default,
        ),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Thu, 26 Nov 2026 13:45:00 GMT\r\ncontent-length: 5\r\n\r\n"
    );
    assert_eq!(
        encoded(
            StatusCode::BAD_GATEWAY,
            &[("date", "then"), ("transfer-encoding", "chunked")],
            ResponseFraming::Chunked,
            ConnectionHeader::Close,
        ),
        "HTTP/1.1 502 Bad Gateway\r\ndate: then\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    // A HEAD answer keeps the length of the body it describes.
    assert_eq!(
        encoded(
            StatusCode::OK,
            &[("date", "then"), ("content-length", "1024")],
            ResponseFraming::Bodiless { length: None },
            ConnectionHeader::KeepAlive,
        ),
        "HTTP/1.1 200 OK\r\ndate: then\r\ncontent-length: 1024\r\nconnection: keep-alive\r\n\r\n"
    );
    assert!(encoded(
        StatusCode::from_u16(599).unwrap_or(StatusCode::OK),
        &[],
        ResponseFraming::UntilClose,
        ConnectionHeader::Close
    )
    .starts_with("HTTP/1.1 599 \r\n"));
}

#[test]
fn framing_follows_method_status_length_and_version() {
    let mut with_length = HeaderMap::new();
    with_length.insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
    let none = HeaderMap::new();
    let v11 = Version::HTTP_11;
    let f = |m: &Method, s: u16, h: &HeaderMap, len: Option<u64>, v: Version| {
        response_framing(
            m,
            StatusCode::from_u16(s).unwrap_or(StatusCode::OK),
            h,
            len,
            v,
        )
    };
    use ResponseFraming::*;
    assert_eq!(
        f(&Method::HEAD, 200, &with_length, Some(0), v11),
        Bodiless { length: None }
    );
    assert_eq!(
        f(&Method::HEAD, 200, &none, Some(7), v11),
        Bodiless { length: Some(7) }
    );
    assert_eq!(
        f(&Method::GET, 204, &none, Some(0), v11),
        Bodiless { length: None }
    );
    assert_eq!(
        f(&Method::GET, 304, &with_length, None, v11),
        Bodiless { length: None }
    );
    assert_eq!(f(&Method::GET, 200, &with_length, Some(3), v11), Length(3));
    assert_eq!(f(&Method::GET, 200, &with_length, None, v11), Length(10));
    assert_eq!(f(&Method::GET, 200, &none, None, v11), Chunked);
    assert_eq!(
        f(&Method::GET, 200, &none, None, Version::HTTP_10),
        UntilClose
    );
}

#[test]
fn chunk_sizes_are_hex() {
    for (len, line) in [
        (0, "0\r\n"),
        (10, "a\r\n"),
        (4096, "1000\r\n"),
        (65535, "ffff\r\n"),
    ] {
        let mut out = Vec::new();
        encode_chunk_size(&mut out, len);
        assert_eq!(out, line.as_bytes());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&raw[..]);
        let before = buf.clone();
        match parse_request_head(&mut buf, &mut HeaderMap::new()) {
            ParsedRequest::Complete(_) => {}
            // Nothing consumed unless a head was taken.
            _ => prop_assert_eq!(buf, before),
        }
    }

    #[test]
    fn every_cut_of_a_head_waits_for_more(
        path in "/[a-z0-9/]{0,20}",
        values in proptest::collection::vec("[a-zA-Z0-9 ;=]{0,16}", 0..6),
    ) {
        let mut raw = format!("GET {path} HTTP/1.1\r\n");
        for (i, v) in values.iter().enumerate() {
            raw.push_str(&format!("x-h{i}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        for cut in 0..raw.len() {
            let (parsed, _) = parse(&raw.as_bytes()[..cut]);
            prop_assert!(matches!(parsed, ParsedRequest::Partial), "cut {}", cut);
        }
        let (head, rest) = complete(raw.as_bytes());
        prop_assert!(rest.is_empty());
        prop_assert_eq!(head.uri.path(), if path.is_empty() { "/" } else { path.as_str() });
        for (i, v) in values.iter().enumerate() {
            let got = head.headers.get(format!("x-h{i}"));
            prop_assert_eq!(got.map(|g| g.as_bytes()), Some(v.trim().as_bytes()));
        }
    }
}

#[test]
fn a_response_asking_to_close_is_written_and_reported_as_closing() {
    let mut map = HeaderMap::new();
    map.insert(CONNECTION, HeaderValue::from_static("Close"));
    map.insert(http::header::DATE, HeaderValue::from_static("then"));
    for asked in [ConnectionHeader::Default, ConnectionHeader::KeepAlive] {
        let mut out = Vec::new();
        let written = encode_response_head(
            &mut out,
            StatusCode::PAYLOAD_TOO_LARGE,
            &map,
            ResponseFraming::Length(0),
            asked,
            NOW,
        );
        assert_eq!(written, ConnectionHeader::Close);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 413 Payload Too Large\r\ndate: then\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }
}
