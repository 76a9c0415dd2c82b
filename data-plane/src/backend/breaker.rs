//! A circuit breaker per upstream server: `closed` counts consecutive
//! failures and opens at the threshold; `open` refuses traffic for the open
//! duration; then `half_open` lets a fixed number of probe requests
//! through: all succeeding closes it, any failing opens it again. Lock-free.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use switchyard_shared::config::CircuitBreaker;

/// The breaker states, as named in events and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// A state change worth an event: `(from, to)`.
pub type Transition = (CircuitState, CircuitState);

/// Validated breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_duration: Duration,
    pub half_open_probes: u32,
}

impl From<&CircuitBreaker> for BreakerSettings {
    fn from(c: &CircuitBreaker) -> Self {
        Self {
            failure_threshold: c.failure_threshold.max(1),
            open_duration: c.open_duration,
            half_open_probes: c.half_open_probes.max(1),
        }
    }
}

/// One server's breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    /// Consecutive failures while closed.
    failures: AtomicU32,
    /// `now_ms()` when the breaker last opened.
    opened_at: AtomicU64,
    /// Probes let through in the current half-open period.
    probes_sent: AtomicU32,
    /// Probes that succeeded in the current half-open period.
    probes_ok: AtomicU32,
}

impl Breaker {
    pub fn state(&self) -> CircuitState {
        CircuitState::from_u8(self.state.load(Relaxed))
    }

    /// Whether a request could be let through now (no state change): the
    /// balancer's eligibility test.
    pub fn allows(&self, s: &BreakerSettings, now: u64) -> bool {
        match self.state() {
            CircuitState::Closed => true,
            CircuitState::Open => now >= self.open_until(s),
            CircuitState::HalfOpen => self.probes_sent.load(Relaxed) < s.half_open_probes,
        }
    }

    /// Called when a request is about to be sent to the server: moves an
    /// expired `open` to `half_open` and counts half-open probes. Returns
    /// whether the request may go, and a transition if one happened.
    pub fn acquire(&self, s: &BreakerSettings, now: u64) -> (bool, Option<Transition>) {
        let mut transition = None;
        if self.state() == CircuitState::Open {
            if now < self.open_until(s) {
                return (false, None);
            }
            if self
                .state
                .compare_exchange(
                    CircuitState::Open.to_u8(),
                    CircuitState::HalfOpen.to_u8(),
                    Relaxed,
                    Relaxed,
                )
                .is_ok()
            {
                self.probes_sent.store(0, Relaxed);
                self.probes_ok.store(0, Relaxed);
                transition = Some((CircuitState::Open, CircuitState::HalfOpen));
            }
        }
        match self.state() {
            CircuitState::Closed => (true, transition),
            CircuitState::Open => (false, transition),
            CircuitState::HalfOpen => {
                let ok = self
                    .probes_sent
                    .fetch_update(Relaxed, Relaxed, |n| {
                        (n < s.half_open_probes).then_some(n + 1)
                    })
                    .is_ok();
                (ok, transition)
            }
        }
    }

    pub fn record_success(&self, s: &BreakerSettings) -> Option<Transition> {
        match self.state() {
            CircuitState::Closed => {
                self.failures.store(0, Relaxed);
                None
            }
            CircuitState::HalfOpen => {
                let ok = self.probes_ok.fetch_add(1, Relaxed) + 1;
                if ok >= s.half_open_probes {
                    self.failures.store(0, Relaxed);
                    self.swap(CircuitState::HalfOpen, CircuitState::Closed)
                } else {
                    None
                }
            }
            // A late answer to a request sent before the breaker opened.
            CircuitState::Open => None,
        }
    }

    pub fn record_failure(&self, s: &BreakerSettings, now: u64) -> Option<Transition> {
        match self.state() {
            CircuitState::Closed => {
                let n = self.failures.fetch_add(1, Relaxed) + 1;
                if n >= s.failure_threshold {
                    self.opened_at.store(now, Relaxed);
                    self.swap(CircuitState::Closed, CircuitState::Open)
                } else {
                    None
                }
            }
            CircuitState::HalfOpen => {
                self.opened_at.store(now, Relaxed);
                self.swap(CircuitState::HalfOpen, CircuitState::Open)
            }
            CircuitState::Open => None,
        }
    }

    fn open_until(&self, s: &BreakerSettings) -> u64 {
        let ms = u64::try_from(s.open_duration.as_millis()).unwrap_or(u64::MAX);
        self.opened_at.load(Relaxed).saturating_add(ms)
    }

    /// Moves `from` -> `to` once (the winner of a race reports it).
    fn swap(&self, from: CircuitState, to: CircuitState) -> Option<Transition> {
        self.state
            .compare_exchange(from.to_u8(), to.to_u8(), Relaxed, Relaxed)
            .ok()
            .map(|_| (from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CircuitState::*;

    fn settings(probes: u32) -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            open_duration: Duration::from_millis(1000),
            half_open_probes: probes,
        }
    }

    #[test]
    fn opens_at_the_threshold_and_refuses_until_the_open_duration_passes() {
        let s = settings(1);
        let b = Breaker::default();
        assert_eq!(b.record_failure(&s, 0), None);
        // A success resets the streak.
        assert_eq!(b.record_success(&s), None);
        assert_eq!(b.record_failure(&s, 0), None);
        assert_eq!(b.record_failure(&s, 0), None);
        assert_eq!(b.record_failure(&s, 100), Some((Closed, Open)));
        assert_eq!(b.state(), Open);
        assert!(!b.allows(&s, 1099));
        assert_eq!(b.acquire(&s, 1099), (false, None));
        assert!(b.allows(&s, 1100));
    }

    #[test]
    fn half_open_admits_the_configured_probes_and_closes_when_all_succeed() {
        let s = settings(2);
        let b = Breaker::default();
        for _ in 0..3 {
            b.record_failure(&s, 0);
        }
        assert_eq!(b.acquire(&s, 1000), (true, Some((Open, HalfOpen))));
        assert_eq!(b.acquire(&s, 1000), (true, None));
        // The third request waits for the probes' verdict.
        assert_eq!(b.acquire(&s, 1000), (false, None));
        assert!(!b.allows(&s, 1000));
        assert_eq!(b.record_success(&s), None);
        assert_eq!(b.record_success(&s), Some((HalfOpen, Closed)));
        assert_eq!(b.acquire(&s, 1000), (true, None));
    }

    #[test]
    fn a_failed_probe_opens_again_for_a_full_period() {
        let s = settings(1);
        let b = Breaker::default();
        for _ in 0..3 {
            b.record_failure(&s, 0);
        }
        assert_eq!(b.acquire(&s, 5000), (true, Some((Open, HalfOpen))));
        assert_eq!(b.record_failure(&s, 5000), Some((HalfOpen, Open)));
        assert!(!b.allows(&s, 5999));
        assert!(b.allows(&s, 6000));
    }
}
