//! The one body type the proxy sends both ways: a ready buffer
//! (replacements, errors) or a stream passed through without buffering.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::upstream_body::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A response or upstream request body.
#[derive(Debug)]
pub enum ProxyBody {
    /// Taken on the first poll.
    Full(Option<Bytes>),
    /// A client body, streamed through.
    Stream(Incoming),
    /// An upstream response body, streamed through; its connection is
    /// pooled again once it has been read to the end.
    Upstream(crate::backend::pool::PooledBody),
    /// An upstream body passed through `rule.rewrite_body`.
    Rewrite(Box<crate::content::rewrite::RewriteBody>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        ProxyBody::Stream(body)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Stream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Rewrite(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Stream(body) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Rewrite(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Stream(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Rewrite(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_body_yields_its_bytes_once_with_an_exact_size() {
        let body = ProxyBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"hello")));
    }
}
