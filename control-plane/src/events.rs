//! The event stream: numbered events (`{type, seq, timestamp, data}`) on a
//! broadcast channel, with a bounded backlog so subscribers can resume from a
//! sequence number.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::time_util;

/// Events kept for resuming subscribers.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: u64,
    /// RFC 3339.
    pub timestamp: String,
    pub data: serde_json::Value,
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Next sequence number and the backlog, under one lock so that a
    /// subscriber's backlog and live stream neither overlap nor leave a gap.
    state: Mutex<(u64, VecDeque<Event>)>,
}

/// A subscription: the backlog to replay first, then the live receiver.
pub struct Subscription {
    pub backlog: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Self {
            tx,
            state: Mutex::new((1, VecDeque::with_capacity(BACKLOG))),
        }
    }

    pub fn publish(&self, kind: &str, data: serde_json::Value) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = state.0;
        state.0 += 1;
        let event = Event {
            kind: kind.to_owned(),
            seq,
            timestamp: time_util::now_rfc3339(),
            data,
        };
        if state.1.len() == BACKLOG {
            state.1.pop_front();
        }
        state.1.push_back(event.clone());
        // No subscribers is fine.
        let _ = self.tx.send(event);
        seq
    }

    /// Subscribes; with `after_seq` the retained events after it come first.
    pub fn subscribe(&self, after_seq: Option<u64>) -> Subscription {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let backlog = match after_seq {
            Some(after) => state.1.iter().filter(|e| e.seq > after).cloned().collect(),
            None => Vec::new(),
        };
        Subscription {
            backlog,
            live: self.tx.subscribe(),
        }
    }

    /// A stream of events: the retained ones after `after_seq` first, then
    /// live ones; only `types` (all when empty). A subscriber too slow to
    /// keep up gets `Err(last_seq_delivered)` once, then the stream ends, so
    /// it can resume from there instead of silently missing events.
    pub fn follow(
        &self,
        after_seq: Option<u64>,
        types: Vec<String>,
    ) -> impl Stream<Item = Result<Event, u64>> + Send + 'static {
        let sub = self.subscribe(after_seq);
        let last = after_seq.unwrap_or(0);
        let state = (VecDeque::from(sub.backlog), sub.live, types, last, false);
        futures::stream::unfold(
            state,
            |(mut backlog, mut live, types, mut last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let event = match backlog.pop_front() {
                        Some(e) => e,
                        None => match live.recv().await {
                            Ok(e) => e,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((Err(last), (backlog, live, types, last, true)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    };
                    // The live channel may repeat what the backlog delivered.
                    if event.seq <= last {
                        continue;
                    }
                    last = event.seq;
                    if types.is_empty() || types.contains(&event.kind) {
                        return Some((Ok(event), (backlog, live, types, last, false)));
                    }
                }
            },
        )
    }

    /// The sequence number of the last published event (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_replays_exactly_the_missed_events() {
        let bus = EventBus::new();
        for i in 0..5 {
            bus.publish("x", serde_json::json!({ "i": i }));
        }
        let mut sub = bus.subscribe(Some(3));
        let seqs: Vec<u64> = sub.backlog.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        bus.publish("y", serde_json::Value::Null);
        let live = sub.live.try_recv().ok().map(|e| (e.kind, e.seq));
        assert_eq!(live, Some(("y".to_owned(), 6)));
        assert_eq!(bus.last_seq(), 6);
    }

    #[tokio::test]
    async fn follow_filters_by_type_and_resumes() {
        use futures::StreamExt;
        let bus = EventBus::new();
        bus.publish("a", serde_json::Value::Null);
        bus.publish("b", serde_json::Value::Null);
        let stream = bus.follow(Some(0), vec!["b".into()]);
        bus.publish("a", serde_json::Value::Null);
        bus.publish("b", serde_json::Value::Null);
        let got: Vec<u64> = stream
            .take(2)
            .map(|e| e.map(|e| e.seq).unwrap_or(0))
            .collect()
            .await;
        assert_eq!(got, vec![2, 4]);
    }
}
