use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use switchyard_shared::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::super::SettingsCache;
use super::*;
use crate::shutdown;

const DEADLINE: Duration = Duration::from_secs(5);

/// A direct connection and the client end of its socket.
async fn pair() -> (DirectConn, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap_or_else(|e| panic!("{e}"));
    let (server, _) = accepted.unwrap_or_else(|e| panic!("{e}"));
    (DirectConn::new(server), client)
}

fn settings(header_timer: Duration, max_header_bytes: u64) -> Arc<ConnSettings> {
    let limits = Limits {
        header_read_timeout: header_timer,
        client_idle_timeout: header_timer,
        max_header_bytes,
        ..Limits::default()
    };
    SettingsCache::default().get(limits)
}

async fn next(
    conn: &mut DirectConn,
    settings: &ConnSettings,
    shutdown: &Shutdown,
) -> Result<RequestHead, NoHead> {
    let since = Instant::now();
    let waits = pin!(head_waits(shutdown, since + settings.header_timer));
    tokio::time::timeout(DEADLINE, conn.next_head(waits, since, settings))
        .await
        .unwrap_or_else(|_| panic!("no head in {DEADLINE:?}"))
}

fn path_of(next: Result<RequestHead, NoHead>) -> String {
    match next {
        Ok(head) => head.uri.to_string(),
        Err(NoHead::Closed) => "closed".into(),
        Err(NoHead::Handover) => "handover".into(),
        Err(NoHead::Late) => "late".into(),
    }
}

/// Everything the client receives until the server closes.
async fn read_to_close(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("server did not close"))
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until `expected` bytes arrived.
async fn read_exactly(client: &mut TcpStream, expected: usize) -> String {
    let mut got = vec![0u8; expected];
    tokio::time::timeout(DEADLINE, client.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("fewer than {expected} bytes came"))
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn pipelined_heads_are_served_in_order() {
    let (mut conn, mut client) = pair().await;
    let (_trigger, stop) = shutdown::channel();
    let settings = settings(DEADLINE, 8192);
    client
        .write_all(b"GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /thr")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "/one");
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "/two");
    client
        .write_all(b"ee HTTP/1.1\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "/three");
    drop(client);
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "closed");
}

#[tokio::test]
async fn bodies_and_oversized_heads_hand_over_with_every_byte_read() {
    let (_trigger, stop) = shutdown::channel();
    let settings = settings(DEADLINE, 100);
    let with_body = b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
    let mut oversized = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
    oversized.resize(9000, b'a');
    for raw in [&with_body[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let (mut conn, mut client) = pair().await;
        client
            .write_all(raw)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "handover");
        assert_eq!(&conn.input[..], raw, "{:?}", String::from_utf8_lossy(raw));
    }
    // A head that fills the buffer goes over as far as it was read; hyper
    // reads the rest itself (and answers 431).
    let (mut conn, mut client) = pair().await;
    client
        .write_all(&oversized)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "handover");
    let read = conn.input.len();
    assert!(
        read >= settings.head_buffer,
        "handed over after {read} bytes"
    );
    assert!(oversized.starts_with(&conn.input), "the bytes read differ");
}

#[tokio::test]
async fn a_stalled_head_is_late_and_an_idle_connection_closes_quietly() {
    let (_trigger, stop) = shutdown::channel();
    let settings = settings(Duration::from_millis(100), 8192);
    let (mut conn, mut client) = pair().await;
    client
        .write_all(b"GET /slow HT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "late");
    assert!(started.elapsed() >= Duration::from_millis(100));
    let (mut conn, _client) = pair().await;
    assert_eq!(path_of(next(&mut conn, &settings, &stop).await), "closed");
}

#[tokio::test]
async fn a_stop_closes_a_connection_waiting_for_a_head() {
    let (trigger, stop) = shutdown::channel();
    let settings = settings(DEADLINE, 8192);
    let (mut conn, _client) = pair().await;
    let waiting = tokio::spawn(async move { path_of(next(&mut conn, &settings, &stop).await) });
    trigger.fire();
    let ended = tokio::time::timeout(DEADLINE, waiting).await;
    assert!(matches!(ended, Ok(Ok(ref s)) if s == "closed"), "{ended:?}");
}

fn response<B>(
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
    body: B,
) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (k, v) in headers {
        response
            .headers_mut()
            .append(*k, http::HeaderValue::from_static(v));
    }
    response
}

#[tokio::test]
async fn a_known_length_body_follows_its_head_with_a_date() {
    let (mut conn, mut client) = pair().await;
    let body = Full::new(Bytes::from_static(b"hello"));
    assert!(
        answer(
            &mut conn,
            &Method::GET,
            Version::HTTP_11,
            response(StatusCode::OK, &[("x-a", "1")], body)
        )
        .await
    );
    let date = httpdate::fmt_http_date(SystemTime::now());
    let expected =
        format!("HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: {date}\r\ncontent-length: 5\r\n\r\nhello");
    let got = read_exactly(&mut client, expected.len()).await;
    // The second may have turned between the two dates.
    assert_eq!(
        got.replace(&date, "D").len(),
        expected.replace(&date, "D").len(),
        "{got}"
    );
    assert!(got.ends_with("content-length: 5\r\n\r\nhello"), "{got}");
}

/// Writes `response` to a `method` request of `version` that allows
/// keep-alive; whether the connection stays open.
async fn answer<B>(
    conn: &mut DirectConn,
    method: &Method,
    version: Version,
    response: Response<B>,
) -> bool
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    conn.respond(response, method, version, true)
        .await
        .unwrap_or_else(|e| panic!("write failed: {e}"))
}

/// Writes `response` like [`answer`], expects the connection to end
/// after it, and returns everything the client received.
async fn answer_and_close<B>(
    mut conn: DirectConn,
    client: &mut TcpStream,
    method: &Method,
    version: Version,
    response: Response<B>,
) -> String
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    assert!(
        !answer(&mut conn, method, version, response).await,
        "kept open"
    );
    drop(conn);
    read_to_close(client).await
}

type FrameResult = Result<Frame<Bytes>, io::Error>;
type Frames = mpsc::Sender<FrameResult>;
type Streamed = StreamBody<ReceiverStream<FrameResult>>;

fn streamed() -> (Frames, Streamed) {
    let (tx, rx) = mpsc::channel(4);
    (tx, StreamBody::new(ReceiverStream::new(rx)))
}

#[tokio::test]
async fn a_streamed_body_is_chunked_and_what_came_goes_out_while_more_is_awaited() {
    let (mut conn, mut client) = pair().await;
    let (frames, body) = streamed();
    let big = vec![b'x'; COPY_LIMIT + 1];
    let big_len = big.len();
    let writer = tokio::spawn(async move {
        let r = conn
            .respond(
                response(StatusCode::OK, &[("date", "D")], body),
                &Method::GET,
                Version::HTTP_11,
                true,
            )
            .await;
        (r.ok(), conn)
    });
    let send = |data: Bytes| {
        let frames = frames.clone();
        async move {
            frames
                .send(Ok(Frame::data(data)))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    send(Bytes::from_static(b"first")).await;
    let head = "HTTP/1.1 200 OK\r\ndate: D\r\ntransfer-encoding: chunked\r\n\r\n";
    // The first chunk is written before the body's next frame exists.
    let got = read_exactly(&mut client, head.len() + "5\r\nfirst\r\n".len()).await;
    assert_eq!(got, format!("{head}5\r\nfirst\r\n"));
    send(Bytes::from(big)).await;
    send(Bytes::new()).await;
    send(Bytes::from_static(b"end")).await;
    drop(frames);
    let tail = format!(
        "{big_len:x}\r\n{}\r\n3\r\nend\r\n0\r\n\r\n",
        "x".repeat(big_len)
    );
    assert_eq!(read_exactly(&mut client, tail.len()).await, tail);
    let (result, _conn) = writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result, Some(true));
}

#[tokio::test]
async fn a_short_or_failed_body_ends_the_connection() {
    // Declared 10 bytes, the body ends after 4.
    let (conn, mut client) = pair().await;
    let (frames, body) = streamed();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"four"))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(frames);
    let got = answer_and_close(
        conn,
        &mut client,
        &Method::GET,
        Version::HTTP_11,
        response(
            StatusCode::OK,
            &[("content-length", "10"), ("date", "D")],
            body,
        ),
    )
    .await;
    assert!(got.ends_with("content-length: 10\r\n\r\nfour"), "{got}");

    // A body error mid-way: no last chunk, the connection is not kept.
    let (conn, mut client) = pair().await;
    let (frames, body) = streamed();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    frames
        .send(Err(io::Error::other("upstream reset")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = answer_and_close(
        conn,
        &mut client,
        &Method::GET,
        Version::HTTP_11,
        response(StatusCode::OK, &[("date", "D")], body),
    )
    .await;
    assert!(got.ends_with("4\r\npart\r\n"), "{got}");
}

#[tokio::test]
async fn head_answers_and_http10_clients_get_what_their_version_needs() {
    // HEAD: the length of the body it describes, no body.
    let (mut conn, mut client) = pair().await;
    let body = Full::new(Bytes::new());
    assert!(
        answer(
            &mut conn,
            &Method::HEAD,
            Version::HTTP_11,
            response(
                StatusCode::OK,
                &[("content-length", "1024"), ("date", "D")],
                body
            )
        )
        .await
    );
    let expected = "HTTP/1.1 200 OK\r\ncontent-length: 1024\r\ndate: D\r\n\r\n";
    assert_eq!(read_exactly(&mut client, expected.len()).await, expected);

    // HTTP/1.0 asking for keep-alive gets it confirmed.
    let body = Full::new(Bytes::from_static(b"ok"));
    assert!(
        answer(
            &mut conn,
            &Method::GET,
            Version::HTTP_10,
            response(StatusCode::OK, &[("date", "D")], body)
        )
        .await
    );
    let expected =
        "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok";
    assert_eq!(read_exactly(&mut client, expected.len()).await, expected);

    // HTTP/1.0, unknown length: the body ends with the connection.
    let (frames, body) = streamed();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"until close"))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(frames);
    let got = answer_and_close(
        conn,
        &mut client,
        &Method::GET,
        Version::HTTP_10,
        response(StatusCode::OK, &[("date", "D")], body),
    )
    .await;
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\ndate: D\r\nconnection: close\r\n\r\nuntil close"
    );
}

#[tokio::test]
async fn a_response_asking_to_close_closes() {
    let (conn, mut client) = pair().await;
    let body = Full::new(Bytes::from_static(b"too big"));
    let got = answer_and_close(
        conn,
        &mut client,
        &Method::GET,
        Version::HTTP_11,
        response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &[("connection", "close"), ("date", "D")],
            body,
        ),
    )
    .await;
    assert!(got.contains("connection: close\r\n"), "{got}");
    assert!(got.ends_with("too big"), "{got}");
}

#[tokio::test]
async fn nagle_is_turned_off_before_a_connections_second_write_only() {
    let (mut conn, _client) = pair().await;
    let nodelay = |conn: &DirectConn| conn.stream.nodelay().unwrap_or_else(|e| panic!("{e}"));
    assert!(!nodelay(&conn), "a fresh socket starts with Nagle on");
    let ok = |text: &'static str| {
        response(
            StatusCode::OK,
            &[("date", "D")],
            Full::new(Bytes::from_static(text.as_bytes())),
        )
    };
    assert!(answer(&mut conn, &Method::GET, Version::HTTP_11, ok("one")).await);
    assert!(!nodelay(&conn), "one write needs no TCP_NODELAY");
    assert!(answer(&mut conn, &Method::GET, Version::HTTP_11, ok("two")).await);
    assert!(
        nodelay(&conn),
        "the second write must not wait behind Nagle"
    );
}
