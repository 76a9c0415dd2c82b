//! A shutdown signal every task can wait on; dropping the [`Trigger`] also
//! fires it, so a failing owner never leaves tasks running.

use tokio::sync::watch;

/// Fires the signal.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown was requested (or the trigger is gone).
    /// Whether the signal has fired (or its trigger is gone), without waiting.
    pub fn is_signalled(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    pub async fn wait(&mut self) {
        // An error means the trigger was dropped: that is shutdown too.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_on_trigger_and_on_drop() {
        let (trigger, mut shutdown) = channel();
        let mut other = shutdown.clone();
        trigger.fire();
        let waited = tokio::time::timeout(Duration::from_secs(5), shutdown.wait()).await;
        assert!(waited.is_ok());

        let (trigger, mut dropped) = channel();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_secs(5), dropped.wait()).await;
        assert!(waited.is_ok());
        // A clone made before the first trigger fired sees it too.
        let waited = tokio::time::timeout(Duration::from_secs(5), other.wait()).await;
        assert!(waited.is_ok());
    }
}
