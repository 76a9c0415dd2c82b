//! A future polled only when it woke its task itself.
//!
//! A task that drives a connection also waits on its timer and on the
//! shutdown signal; IO wakes that task several times per request, and
//! polling a tokio `Sleep` or a `watch` change on each of those wake-ups
//! costs 100-150 instructions apiece (a few percent of a proxied request).
//! [`LazyPoll`] polls the inner future with a waker of its own, which flags
//! that the future has news before waking the task; in between, a poll is
//! one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use pin_project_lite::pin_project;

pin_project! {
    /// Holds its future inline (pin it where it lives); its waker is made
    /// on the first poll, so one that is never polled costs no allocation.
    pub struct LazyPoll<F> {
        #[pin]
        inner: F,
        woken: Option<Arc<Woken>>,
        // The inner future holds our waker since its last poll.
        registered: bool,
    }
}

impl<F> std::fmt::Debug for LazyPoll<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyPoll")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Woken {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> LazyPoll<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            woken: None,
            registered: false,
        }
    }

    /// The inner future, to change it (e.g. reset a `Sleep`): it is polled
    /// again on the next poll.
    pub fn inner_mut(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        *this.registered = false;
        this.inner
    }

    pub fn poll_lazy(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let woken = this.woken.get_or_insert_with(Arc::default);
        if *this.registered && !woken.flag.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        woken.flag.store(false, Ordering::Relaxed);
        woken.task.register(cx.waker());
        let waker = Waker::from(woken.clone());
        let polled = this.inner.poll(&mut Context::from_waker(&waker));
        *this.registered = polled.is_pending();
        polled
    }

    /// Resolves with the inner future's output.
    pub async fn ready(mut self: Pin<&mut Self>) -> F::Output {
        std::future::poll_fn(|cx| self.as_mut().poll_lazy(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_sleep_fires_at_its_deadline_and_again_after_a_reset() {
        let start = Instant::now();
        let mut timer =
            std::pin::pin!(LazyPoll::new(tokio::time::sleep(Duration::from_millis(30))));
        timer.as_mut().ready().await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        let again = Instant::now();
        timer
            .as_mut()
            .inner_mut()
            .reset((again + Duration::from_millis(30)).into());
        timer.as_mut().ready().await;
        assert!(again.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn stays_pending_while_other_work_wakes_the_task_then_completes() {
        let mut timer = std::pin::pin!(LazyPoll::new(tokio::time::sleep(Duration::from_secs(60))));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut signal = std::pin::pin!(LazyPoll::new(rx));
        let mut ticks = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while ticks < 5 {
            tokio::select! {
                () = timer.as_mut().ready() => panic!("fired early"),
                _ = signal.as_mut().ready() => panic!("signalled early"),
                _ = tick.tick() => ticks += 1,
            }
        }
        assert!(signal.registered && timer.registered);
        tx.send(7).unwrap_or_else(|_| panic!("receiver gone"));
        let got = tokio::time::timeout(Duration::from_secs(5), signal.as_mut().ready()).await;
        assert_eq!(got.ok().and_then(Result::ok), Some(7));
        // Brought forward: fires without any other wake-up.
        timer
            .as_mut()
            .inner_mut()
            .reset((Instant::now() + Duration::from_millis(10)).into());
        tokio::time::timeout(Duration::from_secs(5), timer.as_mut().ready())
            .await
            .unwrap_or_else(|_| panic!("did not fire after the reset"));
    }
}
