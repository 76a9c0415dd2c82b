//! The body of requests sent upstream: a buffer (replayed by retries), the
//! client's stream passed through without buffering, a stream whose first
//! frames were read ahead (retry buffering), or a client stream capped at
//! the configured maximum size (its own error type reports the cap).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body error: hyper's, or the proxy's own (a size limit).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body grew past `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// An upstream request body.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Taken on the first poll.
    Full(Option<Bytes>),
    /// A client or upstream body, streamed through.
    Stream(Incoming),
    /// Frames already read from `rest`, replayed first.
    Prefixed {
        frames: VecDeque<Frame<Bytes>>,
        rest: Box<UpstreamBody>,
    },
    /// A client body cut off with [`BodyTooLarge`] past `limit` bytes;
    /// `exceeded` tells the proxy to answer 413.
    Limited {
        inner: Box<UpstreamBody>,
        seen: u64,
        limit: u64,
        exceeded: Arc<AtomicBool>,
    },
}

impl UpstreamBody {
    #[cfg(test)]
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        UpstreamBody::Full(Some(bytes.into()))
    }
}

impl From<Incoming> for UpstreamBody {
    fn from(body: Incoming) -> Self {
        UpstreamBody::Stream(body)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            UpstreamBody::Stream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Prefixed { frames, rest } => match frames.pop_front() {
                Some(f) => Poll::Ready(Some(Ok(f))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
            UpstreamBody::Limited {
                inner,
                seen,
                limit,
                exceeded,
            } => {
                let polled = Pin::new(inner.as_mut()).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        *seen = seen.saturating_add(data.len() as u64);
                        if *seen > *limit {
                            exceeded.store(true, Relaxed);
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                                limit: *limit,
                            }))));
                        }
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full(data) => data.is_none(),
            UpstreamBody::Stream(body) => body.is_end_stream(),
            UpstreamBody::Prefixed { frames, rest } => frames.is_empty() && rest.is_end_stream(),
            UpstreamBody::Limited { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            UpstreamBody::Stream(body) => body.size_hint(),
            UpstreamBody::Prefixed { frames, rest } => {
                let buffered: u64 = frames
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                    .sum();
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
            UpstreamBody::Limited { inner, .. } => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_body_yields_its_bytes_once_with_an_exact_size() {
        let body = UpstreamBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"hello")));
    }

    #[tokio::test]
    async fn prefixed_frames_come_first_then_the_rest() {
        let body = UpstreamBody::Prefixed {
            frames: VecDeque::from([Frame::data(Bytes::from_static(b"ab"))]),
            rest: Box::new(UpstreamBody::full("cd")),
        };
        assert_eq!(body.size_hint().exact(), Some(4));
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn a_limited_body_fails_past_its_limit_and_says_so() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = UpstreamBody::Limited {
            inner: Box::new(UpstreamBody::full("0123456789")),
            seen: 0,
            limit: 4,
            exceeded: exceeded.clone(),
        };
        let err = body.collect().await.err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("request body exceeds 4 bytes"));
        assert!(exceeded.load(Relaxed));
    }
}
