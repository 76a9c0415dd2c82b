//! Passive outlier detection per upstream server: consecutive failures
//! (connect errors, timeouts) eject the server for a period that grows with
//! each ejection; the first success after an ejection readmits it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When and for how long servers are ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Failures in a row that eject a server (0 disables detection).
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// A health transition worth an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    Ejected { failures: u32, period: Duration },
    Readmitted,
}

/// Milliseconds since the first call in this process (monotonic).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One server's passive health.
#[derive(Debug, Default)]
pub struct Outlier {
    consecutive: AtomicU32,
    /// `now_ms()` until which the server is out of rotation.
    ejected_until: AtomicU64,
    /// Ejections so far (the period multiplier).
    ejections: AtomicU32,
    /// Set while ejected or not yet readmitted by a success.
    ejected: AtomicBool,
}

impl Outlier {
    pub fn available(&self, now: u64) -> bool {
        now >= self.ejected_until.load(Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Relaxed)
    }

    pub fn record_success(&self, settings: &OutlierSettings, now: u64) -> Option<HealthChange> {
        self.consecutive.store(0, Relaxed);
        let until = self.ejected_until.load(Relaxed);
        let max_ms = u64::try_from(settings.max_ejection.as_millis()).unwrap_or(u64::MAX);
        if self.ejections.load(Relaxed) > 0 && now > until.saturating_add(max_ms) {
            // Healthy for a long while: forget past ejections.
            self.ejections.store(0, Relaxed);
        }
        self.ejected
            .swap(false, Relaxed)
            .then_some(HealthChange::Readmitted)
    }

    pub fn record_failure(&self, settings: &OutlierSettings, now: u64) -> Option<HealthChange> {
        if settings.consecutive_failures == 0 {
            return None;
        }
        let failures = self.consecutive.fetch_add(1, Relaxed) + 1;
        if failures < settings.consecutive_failures || !self.available(now) {
            return None;
        }
        self.consecutive.store(0, Relaxed);
        let n = self.ejections.fetch_add(1, Relaxed).saturating_add(1);
        let period = settings
            .base_ejection
            .saturating_mul(n)
            .min(settings.max_ejection);
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(period_ms), Relaxed);
        self.ejected.store(true, Relaxed);
        Some(HealthChange::Ejected { failures, period })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
        }
    }

    #[test]
    fn consecutive_failures_eject_for_growing_periods() {
        let s = settings();
        let o = Outlier::default();
        assert_eq!(o.record_failure(&s, 0), None);
        assert_eq!(o.record_failure(&s, 0), None);
        assert_eq!(
            o.record_failure(&s, 0),
            Some(HealthChange::Ejected {
                failures: 3,
                period: Duration::from_secs(10)
            })
        );
        assert!(!o.available(9_999));
        assert!(o.available(10_000));
        assert!(o.is_ejected());

        // Readmitted, fails again: twice as long, then capped.
        for _ in 0..2 {
            o.record_failure(&s, 10_000);
        }
        assert!(matches!(
            o.record_failure(&s, 10_000),
            Some(HealthChange::Ejected { period, .. }) if period == Duration::from_secs(20)
        ));
        for _ in 0..2 {
            o.record_failure(&s, 30_000);
        }
        assert!(matches!(
            o.record_failure(&s, 30_000),
            Some(HealthChange::Ejected { period, .. }) if period == Duration::from_secs(25)
        ));
    }

    #[test]
    fn a_success_resets_the_streak_and_readmits_once() {
        let s = settings();
        let o = Outlier::default();
        o.record_failure(&s, 0);
        o.record_failure(&s, 0);
        assert_eq!(o.record_success(&s, 0), None);
        // The streak restarted: two more failures do not eject.
        o.record_failure(&s, 0);
        o.record_failure(&s, 0);
        assert!(o.available(0));
        assert!(o.record_failure(&s, 0).is_some());
        assert_eq!(o.record_success(&s, 10_000), Some(HealthChange::Readmitted));
        assert_eq!(o.record_success(&s, 10_001), None);
    }

    #[test]
    fn zero_threshold_disables_detection() {
        let s = OutlierSettings {
            consecutive_failures: 0,
            ..settings()
        };
        let o = Outlier::default();
        for _ in 0..100 {
            assert_eq!(o.record_failure(&s, 0), None);
        }
        assert!(o.available(0));
    }
}
