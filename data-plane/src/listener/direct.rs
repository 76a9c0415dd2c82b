//! The direct HTTP/1.1 path: a client connection served in its own task
//! without hyper for the common request, one with no body and no upgrade.
//! Parsing and head encoding are the pure functions of
//! `switchyard_shared::http1`; this module drives them over the socket.
//!
//! Anything else (the HTTP/2 preface, a request body, an upgrade, `Expect`,
//! a malformed or oversized head) hands the connection, with the bytes
//! read so far, to hyper's server for the rest of its life, which answers
//! exactly as it would have from the start (400, 431, h2c...).
//!
//! Limits and stops are the same as hyper's path (see the listener's
//! module doc): one lazily re-armed timer for each wait for a request head
//! (quiet close if nothing of a request came, 408 if part of one did), and
//! a graceful stop that lets the response in progress finish with
//! `Connection: close` and closes idle connections at once.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
#[cfg(test)]
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use switchyard_shared::http1::{
    encode_chunk_size, encode_response_head, parse_request_head, response_framing,
    ConnectionHeader, ParsedRequest, RequestHead, ResponseFraming, LAST_CHUNK,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::ConnSettings;
use crate::lazy::LazyPoll;
use crate::proxy::forward::ClientInfo;
use crate::proxy::upstream_body::UpstreamBody;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;

mod spare;

/// The read buffer a connection starts with (hyper's too).
const INPUT_BUF: usize = 8 * 1024;
/// The write buffer a connection starts with: a head and a small body
/// without growing it.
const OUTPUT_BUF: usize = 4 * 1024;
/// Body chunks up to this size are copied behind the head; a larger one is
/// written from where it is, in the same vectored write as the buffer.
const COPY_LIMIT: usize = 8 * 1024;
/// Buffered output is written once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

/// How the direct path left a connection.
pub(super) enum Ended {
    /// Closed (by either side) or to be closed: nothing more to do.
    Closed,
    /// Hand the socket and the unparsed bytes to hyper.
    Handover(TcpStream, Bytes),
    /// Part of a request head arrived but not all of it in time: owed a
    /// 408.
    HeadTimeout(TcpStream),
}

/// Serves requests on `stream` until it closes, or until it needs hyper.
pub(super) async fn serve(
    stream: TcpStream,
    client: &ClientInfo,
    proxy: &Proxy,
    settings: &ConnSettings,
    shutdown: &Shutdown,
) -> Ended {
    let mut conn = DirectConn::new(stream);
    // The wait for the first head starts at accept.
    let mut waiting_since = Instant::now();
    let mut waits = pin!(head_waits(shutdown, waiting_since + settings.header_timer));
    let end = loop {
        // The head is consumed (and goes out of scope) before the proxy's
        // await, so the future does not keep room for it beside the
        // request.
        let (request, method, version, keep_alive) = {
            let head = match conn
                .next_head(waits.as_mut(), waiting_since, settings)
                .await
            {
                Ok(head) => head,
                Err(end) => break end,
            };
            let method = head.method.clone();
            let (version, keep_alive) = (head.version, head.keep_alive);
            (into_request(head), method, version, keep_alive)
        };
        let response = proxy.handle(request, client).await;
        let keep_alive = keep_alive && !shutdown.is_signalled();
        match conn.respond(response, &method, version, keep_alive).await {
            Ok(true) => waiting_since = Instant::now(),
            // Closing sends the FIN (a `shutdown` first would be one more
            // system call per connection for nothing: nginx closes too).
            Ok(false) | Err(_) => break NoHead::Closed,
        }
    };
    let read = match end {
        NoHead::Handover => std::mem::take(&mut conn.input).freeze(),
        _ => Bytes::new(),
    };
    conn.recycle();
    match end {
        NoHead::Closed => Ended::Closed,
        NoHead::Handover => Ended::Handover(conn.stream, read),
        NoHead::Late => Ended::HeadTimeout(conn.stream),
    }
}

fn into_request(head: RequestHead) -> Request<UpstreamBody> {
    let mut req = Request::new(UpstreamBody::Full(None));
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers;
    req
}

/// Why no request head came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoHead {
    Closed,
    Handover,
    Late,
}

pin_project! {
    /// The head timer and the stop signal, kept in the connection's future
    /// (no allocation until they are first polled).
    struct Waits<S> {
        #[pin]
        timer: LazyPoll<Sleep>,
        #[pin]
        stop: LazyPoll<S>,
    }
}

/// The waits of one connection; the timer first fires at `deadline`.
fn head_waits(shutdown: &Shutdown, deadline: Instant) -> Waits<impl Future<Output = ()> + Send> {
    let mut shutdown = shutdown.clone();
    Waits {
        timer: LazyPoll::new(tokio::time::sleep_until(deadline.into())),
        stop: LazyPoll::new(async move { shutdown.wait().await }),
    }
}

struct DirectConn {
    stream: TcpStream,
    input: BytesMut,
    /// Output not yet written: `out`, then `large` (a body chunk too big to
    /// copy), then `after` (what came behind it), written with one call.
    out: Vec<u8>,
    large: Bytes,
    after: Vec<u8>,
    /// The last response's header map, cleared and reused for the next
    /// request (its room already fits a request plus forwarding headers).
    recycled: HeaderMap,
    /// Whether anything was written yet, and `TCP_NODELAY` set: the first
    /// write goes out at once anyway (nothing unacknowledged ahead of it),
    /// so a connection with one response never makes that system call.
    wrote: bool,
    nodelay: bool,
}

impl DirectConn {
    fn new(stream: TcpStream) -> Self {
        let buffers = spare::take().unwrap_or_else(|| spare::Buffers {
            input: BytesMut::with_capacity(INPUT_BUF),
            out: Vec::with_capacity(OUTPUT_BUF),
            map: HeaderMap::new(),
        });
        Self {
            stream,
            input: buffers.input,
            out: buffers.out,
            large: Bytes::new(),
            after: Vec::new(),
            recycled: buffers.map,
            wrote: false,
            nodelay: false,
        }
    }

    /// Hands the buffers on to a later connection (see `spare`).
    fn recycle(&mut self) {
        let buffers = spare::Buffers {
            input: std::mem::take(&mut self.input),
            out: std::mem::take(&mut self.out),
            map: std::mem::take(&mut self.recycled),
        };
        spare::give(buffers, INPUT_BUF);
    }

    /// The next request head, reading as needed, under the head timer.
    async fn next_head<S: Future<Output = ()>>(
        &mut self,
        waits: Pin<&mut Waits<S>>,
        waiting_since: Instant,
        settings: &ConnSettings,
    ) -> Result<RequestHead, NoHead> {
        let mut waits = waits.project();
        loop {
            if !self.input.is_empty() {
                match parse_request_head(&mut self.input, &mut self.recycled) {
                    ParsedRequest::Complete(head) => return Ok(head),
                    ParsedRequest::Unsupported => return Err(NoHead::Handover),
                    // hyper answers 431 to what overflows its buffer.
                    ParsedRequest::Partial if self.input.len() >= settings.head_buffer => {
                        return Err(NoHead::Handover)
                    }
                    ParsedRequest::Partial => {}
                }
            }
            if self.input.is_empty() {
                // Back to the start of the buffer (the last head is
                // released by now): each head lands in the same,
                // cache-warm bytes instead of walking through all of them.
                let _ = self.input.try_reclaim(INPUT_BUF);
            } else if self.input.capacity() - self.input.len() < 1024 {
                self.input.reserve(INPUT_BUF);
            }
            tokio::select! {
                // Bytes that are there go first: a head that arrived just
                // in time is served.
                biased;
                read = self.stream.read_buf(&mut self.input) => match read {
                    Ok(0) | Err(_) => return Err(NoHead::Closed),
                    Ok(_) => {}
                },
                () = waits.stop.as_mut().ready() => return Err(NoHead::Closed),
                () = waits.timer.as_mut().ready() => {
                    let deadline = waiting_since + settings.header_timer;
                    if Instant::now() < deadline {
                        waits.timer.as_mut().inner_mut().reset(deadline.into());
                    } else if self.input.is_empty() {
                        // Nothing of a request: close quietly (nginx too).
                        return Err(NoHead::Closed);
                    } else {
                        return Err(NoHead::Late);
                    }
                }
            }
        }
    }

    /// Writes `response`; `Ok(true)` if the connection stays open.
    ///
    /// Not an `async fn`, which would hold the response twice (see
    /// `Proxy::handle`).
    fn respond<'a, B>(
        &'a mut self,
        response: Response<B>,
        method: &'a Method,
        version: Version,
        keep_alive: bool,
    ) -> impl Future<Output = io::Result<bool>> + 'a
    where
        B: Body<Data = Bytes> + Unpin + 'a,
        B::Error: std::fmt::Display,
    {
        let (parts, mut body) = response.into_parts();
        async move {
            let framing = response_framing(
                method,
                parts.status,
                &parts.headers,
                body.size_hint().exact(),
                version,
            );
            let keep_alive = keep_alive && framing != ResponseFraming::UntilClose;
            let connection = match (keep_alive, version) {
                (false, _) => ConnectionHeader::Close,
                (true, Version::HTTP_10) => ConnectionHeader::KeepAlive,
                (true, _) => ConnectionHeader::Default,
            };
            // A response that asks to close (a 413) has it its way.
            let connection = DATE.with_borrow_mut(|date| {
                encode_response_head(
                    &mut self.out,
                    parts.status,
                    &parts.headers,
                    framing,
                    connection,
                    date.now(),
                )
            });
            let keep_alive = connection != ConnectionHeader::Close;
            self.recycled = parts.headers;
            let complete = match framing {
                ResponseFraming::Bodiless { .. } => true,
                ResponseFraming::Length(n) => self.send_body(&mut body, Some(n), false).await?,
                ResponseFraming::Chunked => self.send_body(&mut body, None, true).await?,
                ResponseFraming::UntilClose => self.send_body(&mut body, None, false).await?,
            };
            self.flush().await?;
            Ok(keep_alive && complete)
        }
    }

    /// Writes the body's data frames (as chunks if `chunked`); `false` if
    /// the body failed or did not match `length` (the client then sees the
    /// connection close early, as with hyper).
    async fn send_body<B>(
        &mut self,
        body: &mut B,
        length: Option<u64>,
        chunked: bool,
    ) -> io::Result<bool>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let mut sent: u64 = 0;
        loop {
            let buffered = self.has_output();
            // While the body has nothing ready, what is buffered goes out.
            let step = std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending if buffered => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
            })
            .await;
            let frame = match step {
                None => {
                    self.flush().await?;
                    continue;
                }
                Some(None) => break,
                Some(Some(Ok(frame))) => frame,
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "response body failed; closing the client connection");
                    return Ok(false);
                }
            };
            let Ok(mut data) = frame.into_data() else {
                // Trailers: not sent to HTTP/1 clients.
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if let Some(n) = length {
                let room = n - sent;
                if data.len() as u64 > room {
                    data.truncate(room as usize);
                    self.write_data(data, false).await?;
                    return Ok(false);
                }
            }
            sent += data.len() as u64;
            self.write_data(data, chunked).await?;
        }
        if chunked {
            self.append(LAST_CHUNK);
        }
        Ok(length.is_none_or(|n| n == sent))
    }

    async fn write_data(&mut self, data: Bytes, chunked: bool) -> io::Result<()> {
        if chunked {
            encode_chunk_size(self.tail(), data.len());
        }
        if data.len() <= COPY_LIMIT {
            self.append(&data);
        } else {
            if !self.large.is_empty() {
                self.flush().await?;
            }
            // Written from where it is, with what is buffered around it.
            self.large = data;
        }
        if chunked {
            self.append(b"\r\n");
        }
        if self.out.len() + self.after.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Buffers `bytes` behind everything not yet written.
    fn append(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// The buffer that takes what comes next: behind a large chunk if one
    /// waits.
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.large.is_empty() {
            &mut self.out
        } else {
            &mut self.after
        }
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.large.is_empty() || !self.after.is_empty()
    }

    /// Writes all buffered output, vectored: one system call for a head,
    /// a large chunk and what followed it.
    async fn flush(&mut self) -> io::Result<()> {
        let (mut out_at, mut after_at) = (0, 0);
        while out_at < self.out.len() || self.large.has_remaining() || after_at < self.after.len() {
            let out = self.out.get(out_at..).unwrap_or_default();
            let after = self.after.get(after_at..).unwrap_or_default();
            let slices = [
                IoSlice::new(out),
                IoSlice::new(&self.large),
                IoSlice::new(after),
            ];
            if self.wrote && !self.nodelay {
                // A later write could wait for the client's delayed ACK
                // behind Nagle's algorithm.
                self.nodelay = true;
                let _ = self.stream.set_nodelay(true);
            }
            self.wrote = true;
            let mut n = self.stream.write_vectored(&slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_out = n.min(out.len());
            out_at += from_out;
            n -= from_out;
            let from_large = n.min(self.large.len());
            self.large.advance(from_large);
            after_at += n - from_large;
        }
        self.out.clear();
        self.after.clear();
        Ok(())
    }
}

thread_local! {
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { secs: u64::MAX, text: Vec::new() }) };
}

/// The `Date` header value, formatted once per second per thread.
struct CachedDate {
    secs: u64,
    text: Vec<u8>,
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.text
    }
}

#[cfg(test)]
mod tests;
