//! Issue 5, client limits end to end, over raw TCP where the wire matters:
//! a request head that stalls gets `408` (an idle keep-alive connection,
//! or one that never sends a byte, is closed without one), request heads
//! over `max_header_bytes` get `431` to the byte (from the proxy's check
//! and from hyper's buffer, HTTP/1 and HTTP/2), and a per-try timeout
//! without retries is a `504`. Body limits (413) and the whole-request
//! timeout are in `traffic.rs`. Also over raw TCP: the data plane's own
//! HTTP/1.1 path (pipelining, HTTP/1.0, HEAD, the move to hyper when a
//! request with a body comes on a keep-alive connection).

use std::time::{Duration, Instant};

use switchyard_tests::{client, get_text, Backend, BackendMode, DataPlane, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);
/// The configured `header_read_timeout`.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
/// How late past the timeout an answer or a close may come.
const MARGIN: Duration = Duration::from_secs(2);

struct Limited {
    stack: Stack,
    echo: Backend,
    _slow: Backend,
}

async fn stack() -> Limited {
    let echo = Backend::start("echo", BackendMode::Echo).await;
    let slow = Backend::start("slow", BackendMode::Slow(Duration::from_secs(3))).await;
    let yaml = format!(
        r#"
limits: {{ header_read_timeout: 500ms, max_header_bytes: 1KiB }}
backends:
  - name: echo
    servers: [{{ address: "{echo}" }}]
  - name: slow
    servers: [{{ address: "{slow}" }}]
    timeouts: {{ request: 10s, per_try: 200ms }}
rules:
  - name: slow
    match: {{ path_prefix: /slow }}
    action: {{ forward: {{ backend: slow }} }}
  - name: echo
    action: {{ forward: {{ backend: echo }} }}
"#,
        echo = echo.addr,
        slow = slow.addr
    );
    Limited {
        stack: Stack::start(&yaml, WAIT).await,
        echo,
        _slow: slow,
    }
}

async fn connect(dp: &DataPlane) -> TcpStream {
    let addr = dp.proxy("").trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads one response (head and `content-length` body) and returns it.
async fn read_response(tcp: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    while complete_response(&buf).is_none() {
        read_more(tcp, &mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Appends what the next read brings; the proxy closing first fails.
async fn read_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(MARGIN, tcp.read(&mut chunk))
        .await
        .expect("response in time")
        .expect("read");
    assert!(
        n > 0,
        "closed mid-response: {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads until the proxy closes the connection, which must happen within
/// `limit`; returns what was read and when the close came.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "still open after {limit:?}");
    (
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    )
}

async fn metric(dp: &DataPlane, name: &str) -> Option<u64> {
    let text = get_text(&dp.admin("/metrics")).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_heads_get_408_idle_connections_close_quietly() {
    let s = stack().await;
    let limit = HEADER_TIMEOUT + MARGIN;

    // Slowloris: part of a head, then nothing.
    let mut tcp = connect(&s.stack.dp).await;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let (text, after) = read_until_closed(&mut tcp, limit).await;
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(
        lower.contains("\r\nx-switchyard-error: header-timeout\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\nrequest timeout: the request head did not arrive in time\n"),
        "{text}"
    );
    assert!(
        after >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{after:?}"
    );

    // A keep-alive connection that stalls inside its second head.
    let mut tcp = connect(&s.stack.dp).await;
    tcp.write_all(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let first = read_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tcp.write_all(b"GET /second HTTP/1.1\r\nho")
        .await
        .expect("write");
    let (text, _) = read_until_closed(&mut tcp, limit).await;
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );

    // Idle between requests: closed without a byte.
    let mut tcp = connect(&s.stack.dp).await;
    tcp.write_all(b"GET /idle HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let first = read_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let (rest, after) = read_until_closed(&mut tcp, limit).await;
    assert_eq!(rest, "", "an idle connection gets no answer");
    assert!(
        after >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{after:?}"
    );

    // Never a byte: closed without one too, instead of held forever.
    let mut tcp = connect(&s.stack.dp).await;
    let (rest, after) = read_until_closed(&mut tcp, limit).await;
    assert_eq!(rest, "");
    assert!(
        after >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{after:?}"
    );

    // A client that keeps up is unaffected: three requests, slower in
    // total than the header timeout, each head in time.
    let mut tcp = connect(&s.stack.dp).await;
    for i in 0..3 {
        tcp.write_all(format!("GET /ok{i} HTTP/1.1\r\nhost: x\r\n").as_bytes())
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        tcp.write_all(b"\r\n").await.expect("write");
        let r = read_response(&mut tcp).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    assert_eq!(
        metric(&s.stack.dp, "switchyard_client_header_timeouts_total").await,
        Some(2)
    );
    assert_eq!(s.echo.hits(), 5);
}

/// A raw HTTP/1.1 GET whose head is exactly `size` bytes.
fn head_of(size: usize) -> String {
    let fixed = "GET /exact HTTP/1.1\r\nhost: x\r\nx-pad: \r\n\r\n".len();
    let pad = "p".repeat(size - fixed);
    let head = format!("GET /exact HTTP/1.1\r\nhost: x\r\nx-pad: {pad}\r\n\r\n");
    assert_eq!(head.len(), size);
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_max_header_bytes_get_431_to_the_byte() {
    let s = stack().await;

    // The limit (1 KiB, below hyper's 8 KiB buffer) holds to the byte.
    for (size, status) in [(1024, "200"), (1025, "431")] {
        let mut tcp = connect(&s.stack.dp).await;
        tcp.write_all(head_of(size).as_bytes())
            .await
            .expect("write");
        let r = read_response(&mut tcp).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{size}: {r}");
    }

    // With a real client: 2 KiB of header is refused with a clear answer.
    let http = client();
    let r = http
        .get(s.stack.dp.proxy("/big"))
        .header("x-big", "b".repeat(2048))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 431);
    assert_eq!(r.headers()["x-switchyard-error"], "header-too-large");
    let body = r.text().await.expect("body");
    assert_eq!(
        body,
        "request header fields too large: request heads are limited to 1024 bytes\n"
    );
    let r = http
        .get(s.stack.dp.proxy("/small"))
        .header("x-small", "s".repeat(500))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);

    // Over hyper's read buffer: hyper answers 431 before the proxy sees it.
    let r = http
        .get(s.stack.dp.proxy("/huge"))
        .header("x-huge", "h".repeat(20 * 1024))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 431);

    // HTTP/2 (h2c): the codec's header list limit, also 431.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let send = |value: String| {
        let req = http::Request::get(s.stack.dp.proxy("/h2"))
            .header("x-h2", value)
            .body(http_body_util::Empty::new())
            .expect("request");
        h2.request(req)
    };
    let r = send("2".repeat(2048)).await.expect("h2 request");
    assert_eq!(r.status().as_u16(), 431);
    let r = send("2".repeat(100)).await.expect("h2 request");
    assert_eq!(r.status().as_u16(), 200);
    // 1024 and /small, /h2 reached the backend; nothing refused did.
    assert_eq!(s.echo.hits(), 3);

    // A per-try timeout without retries is a 504.
    let started = Instant::now();
    let r = http
        .get(s.stack.dp.proxy("/slow"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 504);
    assert_eq!(r.headers()["x-switchyard-error"], "upstream-timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Reads responses one at a time from a connection that may deliver
/// several in one read (pipelining): what follows a response is kept.
struct Responses {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Responses {
    /// The next response (head and `content-length` body).
    async fn next(&mut self) -> String {
        loop {
            if let Some(end) = complete_response(&self.buf) {
                let rest = self.buf.split_off(end);
                let response = std::mem::replace(&mut self.buf, rest);
                return String::from_utf8_lossy(&response).into_owned();
            }
            read_more(&mut self.tcp, &mut self.buf).await;
        }
    }
}

/// Where the first whole response in `buf` ends, if it is all there.
fn complete_response(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .expect("content-length");
    (buf.len() >= head_end + length).then_some(head_end + length)
}

async fn send(tcp: &mut TcpStream, bytes: &str) {
    tcp.write_all(bytes.as_bytes()).await.expect("write");
}

fn path_in(response: &str) -> &str {
    response
        .split_once("\"path\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(path, _)| path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pipelining_versions_head_and_a_body_mid_connection() {
    let limited = stack().await;
    let dp = &limited.stack.dp;

    // Three requests in one write: three answers, in order.
    let mut responses = Responses {
        tcp: connect(dp).await,
        buf: Vec::new(),
    };
    send(
        &mut responses.tcp,
        "GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    for path in ["/p1", "/p2", "/p3"] {
        let response = responses.next().await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert_eq!(path_in(&response), path, "{response}");
    }
    // A request with a body on the same connection (hyper takes it over)
    // with a GET right behind it: nothing lost, nothing out of order.
    send(
        &mut responses.tcp,
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let response = responses.next().await;
    assert!(response.contains("\"method\":\"POST\""), "{response}");
    assert_eq!(path_in(&response), "/form");
    assert_eq!(path_in(&responses.next().await), "/after");
    send(&mut responses.tcp, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(path_in(&responses.next().await), "/later");

    // HEAD: the head alone (with the length of the body it describes),
    // then the next answer right behind it.
    let mut tcp = connect(dp).await;
    send(
        &mut tcp,
        "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (both, _) = read_until_closed(&mut tcp, MARGIN).await;
    let (head, rest) = both.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{both}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{both}"
    );
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "HEAD sent a body: {both}"
    );
    assert!(
        rest.to_ascii_lowercase().contains("connection: close\r\n"),
        "{rest}"
    );
    assert_eq!(path_in(rest), "/g");

    // HTTP/1.0: closed after the answer unless it asked for keep-alive.
    let mut tcp = connect(dp).await;
    send(&mut tcp, "GET /ten HTTP/1.0\r\nHost: a\r\n\r\n").await;
    let (response, _) = read_until_closed(&mut tcp, MARGIN).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(path_in(&response), "/ten");
    let mut tcp = connect(dp).await;
    for path in ["/ka1", "/ka2"] {
        send(
            &mut tcp,
            &format!("GET {path} HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"),
        )
        .await;
        let response = read_response(&mut tcp).await;
        assert!(
            response
                .to_ascii_lowercase()
                .contains("connection: keep-alive\r\n"),
            "{response}"
        );
        assert_eq!(path_in(&response), path);
    }
}
