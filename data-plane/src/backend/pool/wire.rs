//! HTTP/1.1 to an upstream server on a socket driven by the request's own
//! task: the head is written, the response read and its body streamed by
//! the task that serves the client, with no connection task beside it, no
//! channel between the two and no wake-up of another task per request.
//! hyper's client needs all three; this is where most of a proxied small
//! GET's cost went. Used for requests whose body is in memory (empty, or
//! buffered for retries); streamed request bodies and upgrades go through
//! hyper's client. The protocol itself is `switchyard_shared::http1`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use http_body::{Body, Frame, SizeHint};
use switchyard_shared::http1::{
    encode_request_head, parse_response_head, BodyFraming, ChunkedDecoder, Decoded, Http1Error,
    ResponseHead,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::ServerPool;

/// First read size; doubled while reads fill it (large bodies), up to
/// [`MAX_READ`], halved after [`SHRINK_AFTER`] reads in a row used under
/// a quarter of it.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;
const SHRINK_AFTER: u8 = 4;
/// Request bodies up to this size are copied behind the head: one write.
const INLINE_BODY: usize = 16 * 1024;

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("writing the request failed: {0}")]
    Write(#[source] io::Error),
    #[error("reading the response failed: {source}")]
    Read {
        #[source]
        source: io::Error,
        /// Not one byte of the response had arrived.
        nothing_received: bool,
    },
    #[error("the server closed the connection before the response head ended")]
    Closed { nothing_received: bool },
    #[error("the server closed the connection before the response body ended")]
    BodyCut,
    #[error(transparent)]
    Protocol(#[from] Http1Error),
    #[error("the server switched protocols, but no upgrade was asked for")]
    UnexpectedUpgrade,
}

impl WireError {
    /// The server answered nothing at all: on a reused connection, the
    /// sign of one it had closed while idle.
    pub fn nothing_received(&self) -> bool {
        matches!(
            self,
            WireError::Write(_)
                | WireError::Read {
                    nothing_received: true,
                    ..
                }
                | WireError::Closed {
                    nothing_received: true
                }
        )
    }

    /// The request cannot have been processed (it was not written whole).
    pub fn unsent(&self) -> bool {
        matches!(self, WireError::Write(_))
    }
}

/// One connection to a server, with its read buffer.
#[derive(Debug)]
pub struct WireConn {
    stream: TcpStream,
    /// Bytes read and not yet consumed; body frames share its memory.
    buf: BytesMut,
    /// The request head being written (its capacity is kept).
    out: Vec<u8>,
    read_size: usize,
    /// Reads in a row that used under a quarter of `read_size`.
    small_reads: u8,
}

impl WireConn {
    /// Boxed: the connection moves from pool to request to response body
    /// and back; a pointer is cheaper to move than its buffers' handles.
    pub fn new(stream: TcpStream) -> Box<Self> {
        Box::new(Self {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: MIN_READ,
            small_reads: 0,
        })
    }

    /// Whether an idle connection is still open with nothing unread: the
    /// server has neither closed it nor sent anything since the last
    /// response. Costs no system call unless the socket was signalled.
    pub fn is_idle_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // The readiness may be left from the last read: ask the socket.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes the request and reads the response head (1xx answers are
    /// skipped); the body is left in the buffer for [`WireBody`].
    pub async fn exchange(
        &mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<ResponseHead, WireError> {
        self.out.clear();
        encode_request_head(&mut self.out, method, target, headers, body.len());
        if body.len() <= INLINE_BODY {
            self.out.extend_from_slice(body);
            self.stream
                .write_all(&self.out)
                .await
                .map_err(WireError::Write)?;
        } else {
            self.stream
                .write_all(&self.out)
                .await
                .map_err(WireError::Write)?;
            self.stream
                .write_all(body)
                .await
                .map_err(WireError::Write)?;
        }
        let mut received = false;
        if self.buf.is_empty() {
            // Back to the start of the buffer if nothing else holds it:
            // each response then lands in the same, cache-warm bytes
            // instead of walking through the whole allocation.
            let _ = self.buf.try_reclaim(self.read_size);
        }
        loop {
            // Nothing to parse before the first read.
            let parsed = if self.buf.is_empty() {
                None
            } else {
                parse_response_head(&mut self.buf, method)?
            };
            match parsed {
                Some(head) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(WireError::UnexpectedUpgrade)
                }
                Some(head) if head.status.is_informational() => {}
                Some(head) => return Ok(head),
                None => {
                    let n = poll_fn(|cx| self.poll_fill(cx)).await.map_err(|source| {
                        WireError::Read {
                            source,
                            nothing_received: !received,
                        }
                    })?;
                    if n == 0 {
                        return Err(WireError::Closed {
                            nothing_received: !received,
                        });
                    }
                    received = true;
                }
            }
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(self.read_size);
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.buf
        ))?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
            self.small_reads = 0;
        } else if n < self.read_size / 4 && self.read_size > MIN_READ {
            // Not on the first small read: the tail of a response that just
            // overflowed the buffer is small too, and halving then would
            // split every such response in two reads again.
            self.small_reads += 1;
            if self.small_reads >= SHRINK_AFTER {
                self.read_size /= 2;
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
        Poll::Ready(Ok(n))
    }
}

#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// Reported on the next poll, so that hyper first writes out what
    /// was read before (a client then sees the head and the bytes that
    /// came, as from nginx, rather than a connection closed unanswered).
    Failed(WireError),
    Done,
}

/// A response body read from its connection; the connection goes back to
/// its pool when the body has been read to its end and nothing follows it.
#[derive(Debug)]
pub struct WireBody {
    conn: Option<Box<WireConn>>,
    state: BodyState,
    keep_alive: bool,
    pool: Arc<ServerPool>,
}

/// What one decoding step produced.
enum Step {
    Frame(Frame<Bytes>),
    /// The body ended with this frame (or with none).
    Last(Option<Frame<Bytes>>),
    Fill,
}

impl WireBody {
    pub fn new(
        conn: Box<WireConn>,
        framing: BodyFraming,
        keep_alive: bool,
        pool: Arc<ServerPool>,
    ) -> Self {
        let state = match framing {
            BodyFraming::Empty => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => BodyState::UntilClose,
        };
        let mut body = Self {
            conn: Some(conn),
            state,
            keep_alive,
            pool,
        };
        if matches!(body.state, BodyState::Done) {
            body.finish();
        }
        body
    }

    /// The body has ended: its connection is pooled again when it may
    /// carry another request and holds no stray bytes, else closed.
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                self.pool.check_in_wire(conn);
            }
        }
    }

    fn fail(
        &mut self,
        error: WireError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        self.state = BodyState::Failed(error);
        self.conn = None;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        loop {
            if matches!(this.state, BodyState::Failed(_)) {
                if let BodyState::Failed(error) =
                    std::mem::replace(&mut this.state, BodyState::Done)
                {
                    return Poll::Ready(Some(Err(error)));
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match &mut this.state {
                BodyState::Done | BodyState::Failed(_) => Step::Last(None),
                BodyState::Length(_) | BodyState::UntilClose if conn.buf.is_empty() => Step::Fill,
                BodyState::Length(remaining) => {
                    let take = (*remaining).min(conn.buf.len() as u64);
                    *remaining -= take;
                    let data = Frame::data(conn.buf.split_to(take as usize).freeze());
                    if *remaining == 0 {
                        Step::Last(Some(data))
                    } else {
                        Step::Frame(data)
                    }
                }
                BodyState::UntilClose => Step::Frame(Frame::data(conn.buf.split().freeze())),
                BodyState::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => Step::Frame(Frame::data(data)),
                    Ok(Decoded::Trailers(trailers)) => Step::Last(Some(Frame::trailers(trailers))),
                    Ok(Decoded::End) => Step::Last(None),
                    Ok(Decoded::NeedMore) => Step::Fill,
                    Err(e) => return this.fail(e.into(), cx),
                },
            };
            match step {
                Step::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Step::Last(frame) => {
                    this.finish();
                    return Poll::Ready(frame.map(Ok));
                }
                Step::Fill => match ready!(conn.poll_fill(cx)) {
                    Ok(0) if matches!(this.state, BodyState::UntilClose) => {
                        this.state = BodyState::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => return this.fail(WireError::BodyCut, cx),
                    Ok(_) => {}
                    Err(source) => {
                        return this.fail(
                            WireError::Read {
                                source,
                                nothing_received: false,
                            },
                            cx,
                        )
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
