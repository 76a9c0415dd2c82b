//! The retry budget: every request earns credit, every retry spends more,
//! so retries stay below a fixed share of traffic and a failing backend
//! never causes a retry storm. Lock-free.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Credit earned per request.
const EARN: i64 = 1;
/// Credit a retry costs: at most one retry per 5 requests (20%).
const COST: i64 = 5;
/// Credit cap, so a long quiet period cannot fund a burst of retries.
const CAP: i64 = 500;
/// Starting credit: a fresh backend may retry a few times at once.
const START: i64 = 50;

#[derive(Debug)]
pub struct RetryBudget {
    credit: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            credit: AtomicI64::new(START),
        }
    }
}

impl RetryBudget {
    /// Called once per request.
    pub fn earn(&self) {
        // A lost race only makes the cap slightly soft.
        if self.credit.load(Relaxed) < CAP {
            self.credit.fetch_add(EARN, Relaxed);
        }
    }

    /// Whether a retry could be afforded now (without spending).
    pub fn can_afford(&self) -> bool {
        self.credit.load(Relaxed) >= COST
    }

    /// Spends the cost of one retry; `false` when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        self.credit
            .fetch_update(Relaxed, Relaxed, |c| (c >= COST).then_some(c - COST))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_a_share_of_requests() {
        let b = RetryBudget::default();
        // The starting credit funds START / COST retries.
        let initial = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(initial as i64, START / COST);
        assert!(!b.can_afford());
        // Then 400 requests fund 80 retries (20%).
        for _ in 0..400 {
            b.earn();
        }
        let funded = (0..1000).filter(|_| b.withdraw()).count();
        assert_eq!(funded, 80);
    }

    #[test]
    fn credit_is_capped() {
        let b = RetryBudget::default();
        for _ in 0..100_000 {
            b.earn();
        }
        let funded = (0..100_000).filter(|_| b.withdraw()).count() as i64;
        assert_eq!(funded, CAP / COST);
    }
}
