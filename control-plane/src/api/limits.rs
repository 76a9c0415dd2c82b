//! Per-client-IP rate limiting (token bucket; 429 with Retry-After) and
//! request logging.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::problem::problem_response;
use crate::error::ErrorCode;

/// Buckets kept before idle ones are dropped.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per client IP.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`, or says how long until one is available.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS {
            let idle = Duration::from_secs_f64(self.limit.burst / self.limit.per_second.max(0.001));
            buckets.retain(|_, (_, at)| now.duration_since(*at) < idle);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.limit.burst, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = (1.0 - refilled) / self.limit.per_second.max(0.001);
            Err(Duration::from_secs_f64(wait))
        }
    }
}

pub async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    // Without connection info (in-process tests) there is no client to limit.
    let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned() else {
        return next.run(req).await;
    };
    match limiter.take(addr.ip(), Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = problem_response(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited.as_str(),
                format!("too many requests from {}; retry in {secs}s", addr.ip()),
                Vec::new(),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// Logs every request with its status and duration.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if resp.status().is_server_error() {
        tracing::warn!(%method, %path, status, ms, "api request");
    } else {
        tracing::info!(%method, %path, status, ms, "api request");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(ip, t0).is_ok());
        }
        let wait = limiter.take(ip, t0).expect_err("limited");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(limiter.take(other, t0).is_ok(), "clients are independent");
        assert!(limiter.take(ip, t0 + Duration::from_millis(600)).is_ok());
    }
}
