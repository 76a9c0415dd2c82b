//! The client socket as hyper sees it, watched for what the slowloris
//! answer needs: whether the client has started at all, which protocol it
//! speaks, and whether bytes of a new HTTP/1 request arrived after the last
//! response bytes went out. Reads and writes go straight to the
//! `TcpStream` (same syscalls, same readiness handling); the watching is a
//! couple of plain stores per read or write.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What hyper-util's protocol detection looks for (HTTP/2 prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Shared between a connection's socket and its accept task.
#[derive(Debug, Default)]
pub struct Handoff {
    /// Set once the protocol is known, i.e. the client sent its first
    /// bytes (all of the HTTP/2 preface, or anything else).
    started: AtomicBool,
    /// Set with `started` when the client spoke HTTP/2 (prior knowledge).
    http2: AtomicBool,
    /// The socket, left here when hyper drops it in the middle of an
    /// HTTP/1 request head (so a 408 can still be written).
    parked: Mutex<Option<TcpStream>>,
}

impl Handoff {
    pub fn started(&self) -> bool {
        self.started.load(Relaxed)
    }

    /// Whether the connection speaks HTTP/2 (only meaningful once started).
    pub fn http2(&self) -> bool {
        self.http2.load(Relaxed)
    }

    /// The parked socket, if hyper left one.
    pub fn take(&self) -> Option<TcpStream> {
        lock(&self.parked).take()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only ever holds an Option being set or taken: still usable if poisoned.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The protocol of a connection, decided from its first bytes exactly as
/// hyper-util's `auto` builder decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// This many bytes matched the HTTP/2 preface so far.
    Sniffing(u8),
    Http1,
    Http2,
}

impl Proto {
    fn after(self, new: &[u8]) -> Proto {
        let Proto::Sniffing(seen) = self else {
            return self;
        };
        let seen = usize::from(seen);
        let n = new.len().min(H2_PREFACE.len() - seen);
        if new.get(..n) != H2_PREFACE.get(seen..seen + n) {
            return Proto::Http1;
        }
        match u8::try_from(seen + n) {
            Ok(_) if seen + n == H2_PREFACE.len() => Proto::Http2,
            Ok(seen) => Proto::Sniffing(seen),
            Err(_) => Proto::Http1,
        }
    }
}

impl AsRef<Handoff> for Handoff {
    fn as_ref(&self) -> &Handoff {
        self
    }
}

/// A `TcpStream` that reports to its connection's [`Handoff`] (kept in
/// the connection's shared state `C`, so no allocation of its own).
pub struct WatchedStream<C: AsRef<Handoff>> {
    /// Only `None` once dropped.
    stream: Option<TcpStream>,
    conn: Arc<C>,
    proto: Proto,
    /// Bytes were read after the last write: part of a new request (or of
    /// the current one's body) is in.
    input_pending: bool,
    /// Bytes read from the socket before hyper took it, read first.
    prefix: Bytes,
}

impl<C: AsRef<Handoff>> WatchedStream<C> {
    #[cfg(test)]
    pub fn new(stream: TcpStream, conn: Arc<C>) -> Self {
        Self::with_prefix(stream, Bytes::new(), conn)
    }

    /// A stream whose first bytes are `prefix` (already read from it).
    pub fn with_prefix(stream: TcpStream, prefix: Bytes, conn: Arc<C>) -> Self {
        Self {
            stream: Some(stream),
            conn,
            proto: Proto::Sniffing(0),
            input_pending: false,
            prefix,
        }
    }

    fn saw_input(&mut self, new: &[u8]) {
        self.input_pending = true;
        if let Proto::Sniffing(_) = self.proto {
            self.proto = self.proto.after(new);
            if !matches!(self.proto, Proto::Sniffing(_)) {
                let handoff = (*self.conn).as_ref();
                handoff.http2.store(self.proto == Proto::Http2, Relaxed);
                handoff.started.store(true, Relaxed);
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl<C: AsRef<Handoff>> Drop for WatchedStream<C> {
    fn drop(&mut self) {
        // hyper drops its socket when the connection ends. Only a
        // connection that stopped inside an HTTP/1 request head may be
        // owed a 408 by the accept task; every other socket closes here.
        if self.input_pending && self.proto == Proto::Http1 {
            if let Some(stream) = self.stream.take() {
                *lock(&(*self.conn).as_ref().parked) = Some(stream);
            }
        }
    }
}

impl<C: AsRef<Handoff>> AsyncRead for WatchedStream<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            let taken = this.prefix.split_to(n);
            buf.put_slice(&taken);
            this.saw_input(&taken);
            return Poll::Ready(Ok(()));
        }
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let before = buf.filled().len();
        let polled = Pin::new(stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.saw_input(buf.filled().get(before..).unwrap_or_default());
        }
        polled
    }
}

impl<C: AsRef<Handoff>> AsyncWrite for WatchedStream<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let polled = Pin::new(stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.input_pending = false;
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let polled = Pin::new(stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.input_pending = false;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_flush(cx),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            None => Poll::Ready(Err(gone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_protocol_is_decided_like_hyper_util_does() {
        let start = Proto::Sniffing(0);
        assert_eq!(start.after(b"GET / HTTP/1.1\r\n"), Proto::Http1);
        // Methods sharing the preface's first letters are still HTTP/1.
        assert_eq!(start.after(b"PUT"), Proto::Http1);
        assert_eq!(start.after(b"PRI / HTTP/1.1"), Proto::Http1);
        assert_eq!(start.after(H2_PREFACE), Proto::Http2);
        // Byte by byte, then the rest with frames behind it.
        let p = start.after(b"P").after(b"RI * HTTP/2");
        assert_eq!(p, Proto::Sniffing(12));
        let mut rest = H2_PREFACE[12..].to_vec();
        rest.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(p.after(&rest), Proto::Http2);
        assert_eq!(p.after(b"x"), Proto::Http1);
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client = TcpStream::connect(addr);
        let (client, accepted) = tokio::join!(client, listener.accept());
        let client = client.unwrap_or_else(|e| panic!("{e}"));
        let (server, _) = accepted.unwrap_or_else(|e| panic!("{e}"));
        (client, server)
    }

    #[tokio::test]
    async fn a_socket_dropped_inside_an_http1_request_is_parked_others_close() {
        let mut buf = [0u8; 64];
        // Partial request after a response: parked, still open.
        let (mut client, server) = pair().await;
        let handoff = Arc::new(Handoff::default());
        let mut watched = WatchedStream::new(server, handoff.clone());
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let n = watched
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0 && handoff.started() && !handoff.http2());
        drop(watched);
        let mut parked = handoff.take().unwrap_or_else(|| panic!("parked"));
        parked
            .write_all(b"late")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let n = client
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf.get(..n), Some(&b"late"[..]));

        // Idle after a response: closed on drop.
        let (mut client, server) = pair().await;
        let handoff = Arc::new(Handoff::default());
        let mut watched = WatchedStream::new(server, handoff.clone());
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = watched
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        watched
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(watched);
        assert!(handoff.take().is_none());
        let mut all = Vec::new();
        client
            .read_to_end(&mut all)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all, b"HTTP/1.1 200 OK\r\n\r\n");

        // HTTP/2 is never parked; nothing read means not started.
        let (mut client, server) = pair().await;
        let handoff = Arc::new(Handoff::default());
        let mut watched = WatchedStream::new(server, handoff.clone());
        assert!(!handoff.started());
        client
            .write_all(H2_PREFACE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = 0;
        while got < H2_PREFACE.len() {
            got += watched
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(handoff.started() && handoff.http2());
        drop(watched);
        assert!(handoff.take().is_none());
    }
}
