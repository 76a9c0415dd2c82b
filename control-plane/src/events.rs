//! The event stream: numbered events (`{type, seq, timestamp, data}`) on a
//! broadcast channel, with a bounded backlog so subscribers can resume from a
//! sequence number.

use std::collections::VecDeque;
use std::sync::Mutex;

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
}
