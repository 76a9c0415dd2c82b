//! Per-try upstream deadlines on a coarse clock. A tokio timer costs a
//! wheel insertion and a removal per try, about a thousand instructions,
//! near a tenth of a proxied GET's whole cost in this process; tries almost
//! never time out. Here a try that has to wait takes a slot in a slab, and
//! one sweeper task per data plane marks expired slots every [`TICK`] and
//! wakes their tries: a deadline fires up to one tick late.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// How often the sweeper looks for expired deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// A future outlived its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// The deadlines of one data plane's tries in flight.
#[derive(Debug, Default)]
pub struct Deadlines {
    inner: Mutex<Inner>,
    /// Wakes the sweeper parked on an empty slab.
    wake_sweeper: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Slab<Slot>,
    sweeper_parked: bool,
}

#[derive(Debug)]
struct Slot {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

impl Deadlines {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The slab stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `future` until `at`, then fails with [`Elapsed`].
    pub fn within<F: Future>(&self, at: Instant, future: F) -> Within<'_, F> {
        Within {
            future,
            deadlines: self,
            at,
            slot: None,
        }
    }

    /// Marks expired deadlines and wakes their tries every tick; parks
    /// while no try waits. Ends at shutdown.
    pub async fn sweep(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let parked = {
                let mut inner = self.lock();
                if inner.slots.is_empty() {
                    inner.sweeper_parked = true;
                } else {
                    let now = Instant::now();
                    for (_, slot) in inner.slots.iter_mut() {
                        if !slot.expired && slot.at <= now {
                            slot.expired = true;
                            if let Some(waker) = slot.waker.take() {
                                waker.wake();
                            }
                        }
                    }
                }
                inner.sweeper_parked
            };
            tokio::select! {
                () = shutdown.wait() => return,
                () = self.wake_sweeper.notified(), if parked => {}
                _ = tick.tick(), if !parked => {}
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A future with a deadline (see [`Deadlines::within`]).
    pub struct Within<'a, F> {
        #[pin]
        future: F,
        deadlines: &'a Deadlines,
        at: Instant,
        slot: Option<usize>,
    }

    impl<F> PinnedDrop for Within<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(key) = this.slot.take() {
                this.deadlines.lock().slots.try_remove(key);
            }
        }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let mut inner = this.deadlines.lock();
        let Some(key) = *this.slot else {
            // First wait: take a slot (a try answered at once never does).
            *this.slot = Some(inner.slots.insert(Slot {
                at: *this.at,
                waker: Some(cx.waker().clone()),
                expired: false,
            }));
            let wake = std::mem::take(&mut inner.sweeper_parked);
            drop(inner);
            if wake {
                this.deadlines.wake_sweeper.notify_one();
            }
            return Poll::Pending;
        };
        match inner.slots.get_mut(key) {
            Some(slot) if slot.expired => {
                inner.slots.try_remove(key);
                *this.slot = None;
                Poll::Ready(Err(Elapsed))
            }
            Some(slot) => {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // Not reachable: only this future removes its slot.
            None => Poll::Ready(Err(Elapsed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> (Arc<Deadlines>, crate::shutdown::Trigger) {
        let deadlines = Deadlines::new();
        let (trigger, signal) = crate::shutdown::channel();
        tokio::spawn(deadlines.clone().sweep(signal));
        (deadlines, trigger)
    }

    #[tokio::test]
    async fn a_future_done_in_time_gives_its_output_and_frees_its_slot() {
        let (deadlines, _trigger) = started();
        let at = Instant::now() + Duration::from_secs(5);
        let done = deadlines
            .within(at, async {
                tokio::task::yield_now().await;
                7
            })
            .await;
        assert_eq!(done, Ok(7));
        assert!(deadlines.lock().slots.is_empty());
    }

    #[tokio::test]
    async fn a_future_past_its_deadline_fails_within_a_tick_or_so() {
        let (deadlines, _trigger) = started();
        let start = Instant::now();
        let at = start + Duration::from_millis(50);
        let outcome = deadlines.within(at, std::future::pending::<()>()).await;
        let waited = start.elapsed();
        assert_eq!(outcome, Err(Elapsed));
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(deadlines.lock().slots.is_empty());
    }

    #[tokio::test]
    async fn the_sweeper_parks_when_idle_and_wakes_for_the_next_wait() {
        let (deadlines, _trigger) = started();
        for _ in 0..3 {
            let at = Instant::now() + Duration::from_millis(20);
            let outcome = deadlines.within(at, std::future::pending::<()>()).await;
            assert_eq!(outcome, Err(Elapsed));
            // The sweeper finds the slab empty and parks.
            let give_up = Instant::now() + Duration::from_secs(2);
            while !deadlines.lock().sweeper_parked {
                assert!(Instant::now() < give_up, "the sweeper never parked");
                tokio::time::sleep(TICK).await;
            }
        }
    }

    #[tokio::test]
    async fn a_dropped_future_frees_its_slot() {
        let (deadlines, _trigger) = started();
        let at = Instant::now() + Duration::from_secs(5);
        let mut waiting = Box::pin(deadlines.within(at, std::future::pending::<()>()));
        let polled = futures::poll!(waiting.as_mut());
        assert!(polled.is_pending());
        assert_eq!(deadlines.lock().slots.len(), 1);
        drop(waiting);
        assert!(deadlines.lock().slots.is_empty());
    }
}
