//! One lazily re-armed deadline per HTTP/1 connection for its request
//! heads, instead of a timer armed and cancelled for every head (hyper's
//! `header_read_timeout` boxes a timer-wheel entry per request: ~4% of the
//! instructions of a proxied 1 KiB GET).
//!
//! The connection's clock knows two things, kept with two counter updates
//! and one store per request: how many exchanges are in flight (a head was parsed and its
//! response has not been written to the end) and since when none has been.
//! The accept task's single timer fires at `idle_since + limit`; when it
//! fires and an exchange is in flight it re-arms, otherwise the head (or the
//! first byte) is late.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::body::ProxyBody;
use crate::proxy::upstream_body::BoxError;

/// When the connection last had no exchange in flight.
#[derive(Debug)]
pub struct HeadClock {
    opened: Instant,
    in_flight: AtomicU32,
    /// Micros after `opened` at which the last exchange ended (0: none yet).
    idle_since_micros: AtomicU64,
}

/// What the connection's timer found when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is late: fire again at this instant.
    RearmAt(Instant),
    /// No request head completed within the limit.
    Late,
}

impl Default for HeadClock {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl HeadClock {
    pub fn new(opened: Instant) -> Self {
        Self {
            opened,
            in_flight: AtomicU32::new(0),
            idle_since_micros: AtomicU64::new(0),
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    fn end(&self, now: Instant) {
        let micros = u64::try_from(now.saturating_duration_since(self.opened).as_micros())
            .unwrap_or(u64::MAX);
        self.idle_since_micros.store(micros, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// The first instant at which a head can be late.
    pub fn first_deadline(&self, limit: Duration) -> Instant {
        self.opened + limit
    }

    /// Whether the connection waited for a request head longer than
    /// `limit` by `now`.
    pub fn check(&self, now: Instant, limit: Duration) -> Verdict {
        if self.in_flight.load(Relaxed) > 0 {
            // The wait for the next head starts when this exchange ends.
            return Verdict::RearmAt(now + limit);
        }
        let idle_since = self.opened + Duration::from_micros(self.idle_since_micros.load(Relaxed));
        let deadline = idle_since + limit;
        if now >= deadline {
            Verdict::Late
        } else {
            Verdict::RearmAt(deadline)
        }
    }
}

/// One request on a connection, from its parsed head until its response
/// body is written to the end or dropped.
#[derive(Debug)]
pub struct Exchange<C: AsRef<HeadClock>> {
    conn: Arc<C>,
}

impl<C: AsRef<HeadClock>> Exchange<C> {
    pub fn begin(conn: Arc<C>) -> Self {
        (*conn).as_ref().begin();
        Self { conn }
    }

    pub fn conn(&self) -> &C {
        &self.conn
    }
}

impl<C: AsRef<HeadClock>> Drop for Exchange<C> {
    fn drop(&mut self) {
        (*self.conn).as_ref().end(Instant::now());
    }
}

/// A response body that ends its exchange when hyper drops it (written to
/// the end, or the connection gone).
#[derive(Debug)]
pub struct ExchangeBody<C: AsRef<HeadClock>> {
    body: ProxyBody,
    _exchange: Exchange<C>,
}

impl<C: AsRef<HeadClock>> ExchangeBody<C> {
    pub fn new(body: ProxyBody, exchange: Exchange<C>) -> Self {
        Self {
            body,
            _exchange: exchange,
        }
    }
}

impl<C: AsRef<HeadClock>> Body for ExchangeBody<C> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // ProxyBody is Unpin, and so is this wrapper.
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AsRef<HeadClock> for HeadClock {
        fn as_ref(&self) -> &HeadClock {
            self
        }
    }

    const LIMIT: Duration = Duration::from_millis(500);

    #[test]
    fn a_fresh_connection_is_late_one_limit_after_it_opened() {
        let t0 = Instant::now();
        let clock = HeadClock::new(t0);
        assert_eq!(clock.first_deadline(LIMIT), t0 + LIMIT);
        let early = t0 + Duration::from_millis(100);
        assert_eq!(clock.check(early, LIMIT), Verdict::RearmAt(t0 + LIMIT));
        assert_eq!(clock.check(t0 + LIMIT, LIMIT), Verdict::Late);
    }

    #[test]
    fn an_exchange_in_flight_is_never_late_and_the_wait_restarts_when_it_ends() {
        let t0 = Instant::now();
        let clock = Arc::new(HeadClock::new(t0));
        let exchange = Exchange::begin(clock.clone());
        let much_later = t0 + LIMIT * 10;
        assert_eq!(
            clock.check(much_later, LIMIT),
            Verdict::RearmAt(much_later + LIMIT)
        );
        drop(exchange);
        let ended = Instant::now();
        match clock.check(ended, LIMIT) {
            Verdict::RearmAt(at) => assert!(at > ended && at <= ended + LIMIT, "{at:?}"),
            Verdict::Late => panic!("late right after an exchange ended"),
        }
        assert_eq!(clock.check(ended + LIMIT * 2, LIMIT), Verdict::Late);
    }

    #[tokio::test]
    async fn the_body_ends_its_exchange_when_dropped_and_passes_frames_through() {
        use http_body_util::BodyExt;
        let clock = Arc::new(HeadClock::new(Instant::now()));
        let body = ExchangeBody::new(ProxyBody::full("abc"), Exchange::begin(clock.clone()));
        assert_eq!(clock.in_flight.load(Relaxed), 1);
        assert_eq!(body.size_hint().exact(), Some(3));
        let bytes = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(clock.in_flight.load(Relaxed), 0);
    }
}
