//! Streamed find/replace on proxied response bodies (`rule.rewrite_body`),
//! like nginx `sub_filter`. Each replacement is a stage that keeps a small
//! tail of unsent bytes, so a match split across chunks is still found:
//! a literal keeps `len(find) - 1` bytes, a regex keeps up to
//! [`REGEX_WINDOW`] bytes (regex matches longer than that may be missed).
//!
//! Which responses are rewritten: those whose Content-Type essence is in
//! `content_types`, with a body (not HEAD, 1xx, 204, 206, 304), and not
//! content-encoded. The rule for compressed bodies: the proxy asks the
//! upstream for an uncompressed body (it drops the client's
//! Accept-Encoding on forward rules that rewrite); a response that is
//! compressed anyway passes through untouched. Likewise the proxy drops the
//! client's Range and If-Range on those rules, so the upstream answers the
//! whole body and the client gets it rewritten with 200, never an
//! unrewritten 206. Rewritten responses lose
//! Content-Length (they are sent chunked) and their ETag becomes weak.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use regex::bytes::{Regex, RegexBuilder};
use switchyard_shared::config::BodyRewrite;

use crate::proxy::body::ProxyBody;
use crate::proxy::upstream_body::BoxError;

/// Bytes a regex stage holds back: the longest match it reliably finds
/// across a chunk boundary.
pub const REGEX_WINDOW: usize = 4096;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule's compiled rewrite, shared by its requests.
#[derive(Debug)]
pub struct CompiledRewrite {
    content_types: Vec<String>,
    stages: Vec<Stage>,
}

#[derive(Debug)]
struct Stage {
    find: Regex,
    replace: Vec<u8>,
    /// `$1` references are expanded (regex replacements only).
    expand: bool,
    /// Bytes held back between chunks.
    hold: usize,
}

impl CompiledRewrite {
    pub fn compile(spec: &BodyRewrite) -> Result<Self, String> {
        let mut stages = Vec::with_capacity(spec.replacements.len());
        for (i, r) in spec.replacements.iter().enumerate() {
            if r.find.is_empty() {
                return Err(format!("replacements[{i}].find is empty"));
            }
            let pattern = if r.regex {
                r.find.clone()
            } else {
                regex::escape(&r.find)
            };
            let find = RegexBuilder::new(&pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("replacements[{i}].find: {e}"))?;
            stages.push(Stage {
                find,
                replace: r.replace.as_bytes().to_vec(),
                expand: r.regex,
                hold: if r.regex {
                    REGEX_WINDOW
                } else {
                    r.find.len() - 1
                },
            });
        }
        Ok(Self {
            content_types: spec
                .content_types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            stages,
        })
    }

    /// Whether a response with this status and these headers is rewritten.
    pub fn applies(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            return false;
        }
        let encoded = headers
            .get(CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return false;
        }
        let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.content_types.contains(&essence)
    }

    /// Wraps the response body when the rewrite applies; otherwise returns
    /// the response unchanged.
    pub fn apply(
        self: &std::sync::Arc<Self>,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        if !self.applies(response.status(), response.headers()) {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        parts.headers.remove(ACCEPT_RANGES);
        if let Some(etag) = parts.headers.get(ETAG).cloned() {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(etag.as_bytes());
                match HeaderValue::from_bytes(&weak) {
                    Ok(v) => parts.headers.insert(ETAG, v),
                    Err(_) => parts.headers.remove(ETAG),
                };
            }
        }
        let body = ProxyBody::Rewrite(Box::new(RewriteBody {
            inner: body,
            rewriter: Rewriter::new(self.clone()),
            done: false,
        }));
        Response::from_parts(parts, body)
    }
}

/// The streaming state: one pending buffer per stage.
#[derive(Debug)]
pub struct Rewriter {
    rules: std::sync::Arc<CompiledRewrite>,
    pending: Vec<BytesMut>,
}

impl Rewriter {
    pub fn new(rules: std::sync::Arc<CompiledRewrite>) -> Self {
        let pending = rules.stages.iter().map(|_| BytesMut::new()).collect();
        Self { rules, pending }
    }

    /// Feeds a chunk; returns the bytes that are final.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.run(chunk, false)
    }

    /// Ends the stream; returns everything still held back.
    pub fn finish(&mut self) -> Bytes {
        self.run(&[], true)
    }

    fn run(&mut self, input: &[u8], last: bool) -> Bytes {
        let mut data = Bytes::copy_from_slice(input);
        for (stage, pending) in self.rules.stages.iter().zip(self.pending.iter_mut()) {
            pending.extend_from_slice(&data);
            data = stage.process(pending, last);
        }
        data
    }
}

impl Stage {
    /// Replaces matches in `buf`, returns what is final and leaves the
    /// held-back tail in `buf`.
    fn process(&self, buf: &mut BytesMut, last: bool) -> Bytes {
        let len = buf.len();
        let mut out = Vec::with_capacity(len);
        let mut pos = 0;
        let mut cut = None;
        for caps in self.find.captures_iter(buf) {
            let Some(m) = caps.get(0) else { continue };
            if m.start() == m.end() {
                continue;
            }
            // A regex match reaching into the held-back tail might grow
            // with the next chunk: decide it then.
            if !last && self.expand && m.end() + self.hold > len {
                cut = Some(m.start());
                break;
            }
            out.extend_from_slice(&buf[pos..m.start()]);
            if self.expand {
                caps.expand(&self.replace, &mut out);
            } else {
                out.extend_from_slice(&self.replace);
            }
            pos = m.end();
        }
        let safe = match (last, cut) {
            (true, _) => len,
            (false, Some(c)) => c,
            (false, None) => len.saturating_sub(self.hold).max(pos),
        };
        let safe = safe.max(pos);
        out.extend_from_slice(&buf[pos..safe]);
        let _ = buf.split_to(safe);
        Bytes::from(out)
    }
}

/// A response body passed through a [`Rewriter`].
#[derive(Debug)]
pub struct RewriteBody {
    inner: ProxyBody,
    rewriter: Rewriter,
    done: bool,
}

impl Body for RewriteBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.rewriter.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    // Trailers end the data: flush before passing them on.
                    Err(frame) => {
                        this.done = true;
                        let out = this.rewriter.finish();
                        if out.is_empty() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        // Trailers after a rewritten body are dropped.
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Poll::Ready(None) => {
                    this.done = true;
                    let out = this.rewriter.finish();
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
