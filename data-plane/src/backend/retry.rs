//! Retry policy helpers: the retry budget (every request earns credit,
//! every retry spends more, so retries stay below a configured share of
//! traffic and a failing backend never causes a retry storm; a small
//! per-second floor lets a quiet backend still retry), full-jitter
//! exponential backoff and the idempotency rule. Lock-free.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use http::Method;
use switchyard_shared::config::RetryPolicy;

/// Credit a retry costs; a request earns `budget_percent` of it.
const COST: i64 = 100;
/// Credit cap in retries, so a long quiet period cannot fund a burst.
const CAP_RETRIES: i64 = 100;

#[derive(Debug)]
pub struct RetryBudget {
    /// Credit earned per request (the configured percentage).
    earn: i64,
    /// Retries allowed per wall second regardless of credit.
    min_per_second: u32,
    credit: AtomicI64,
    /// `(second << 32) | retries taken from the floor in that second`.
    floor: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        let p = RetryPolicy::default();
        Self::new(p.budget_percent, p.min_retries_per_second)
    }
}

impl RetryBudget {
    pub fn new(budget_percent: u32, min_per_second: u32) -> Self {
        Self {
            earn: i64::from(budget_percent.min(100)),
            min_per_second,
            credit: AtomicI64::new(0),
            floor: AtomicU64::new(0),
        }
    }

    /// Called once per request.
    pub fn earn(&self) {
        // A lost race only makes the cap slightly soft.
        if self.credit.load(Relaxed) < CAP_RETRIES * COST {
            self.credit.fetch_add(self.earn, Relaxed);
        }
    }

    /// Spends one retry at `now_ms`: from the per-second floor first, else
    /// from the credit; `false` when neither allows it.
    pub fn withdraw(&self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        let from_floor = self
            .floor
            .fetch_update(Relaxed, Relaxed, |packed| {
                let (s, used) = (packed >> 32, packed & 0xffff_ffff);
                let used = if s == second { used } else { 0 };
                (used < u64::from(self.min_per_second)).then_some((second << 32) | (used + 1))
            })
            .is_ok();
        from_floor
            || self
                .credit
                .fetch_update(Relaxed, Relaxed, |c| (c >= COST).then_some(c - COST))
                .is_ok()
    }
}

/// The full-jitter backoff before retry number `retry` (0-based):
/// random(0, min(max, base * 2^retry)).
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << retry.min(20))
        .min(policy.backoff_max);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random_range(0..=micros))
}

/// Methods that may be sent twice without changing the outcome
/// (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_the_configured_share_of_requests() {
        let b = RetryBudget::new(20, 0);
        assert!(!b.withdraw(0), "no credit, no floor");
        for _ in 0..400 {
            b.earn();
        }
        let funded = (0..1000).filter(|_| b.withdraw(0)).count();
        assert_eq!(funded, 80);
    }

    #[test]
    fn the_per_second_floor_allows_a_few_retries_each_second() {
        let b = RetryBudget::new(0, 3);
        assert_eq!((0..10).filter(|_| b.withdraw(1_000)).count(), 3);
        assert_eq!((0..10).filter(|_| b.withdraw(1_999)).count(), 0);
        assert_eq!((0..10).filter(|_| b.withdraw(2_000)).count(), 3);
    }

    #[test]
    fn credit_is_capped() {
        let b = RetryBudget::new(50, 0);
        for _ in 0..100_000 {
            b.earn();
        }
        let funded = (0..100_000).filter(|_| b.withdraw(0)).count() as i64;
        assert_eq!(funded, CAP_RETRIES);
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let p = RetryPolicy {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        for retry in 0..8 {
            let ceiling = Duration::from_millis((10u64 << retry).min(50));
            let samples: Vec<_> = (0..200).map(|_| backoff(&p, retry)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "retry {retry}");
            // Full jitter: spread over the range, not pinned at the top.
            assert!(samples.iter().any(|d| *d < ceiling / 2), "retry {retry}");
        }
    }

    #[test]
    fn only_idempotent_methods_are_retried_by_default() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
