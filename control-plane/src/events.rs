//! The event stream: numbered events (`{type, seq, timestamp, data}`) on a
//! broadcast channel, with a bounded backlog so subscribers can resume from a
//! sequence number.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::Stream;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::time_util;

/// Events kept for resuming subscribers: at most this many...
const BACKLOG: usize = 1024;
/// ...holding at most this much data (the metrics summary of a 10,000-rule
/// configuration is megabytes, and one is published every tick).
const BACKLOG_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: u64,
    /// RFC 3339.
    pub timestamp: String,
    /// Serialized once when published, then shared by the backlog and
    /// every subscriber instead of copied.
    #[serde(serialize_with = "raw_json")]
    pub data: Arc<RawValue>,
}

impl Event {
    /// An event of the stream itself (not of the bus), same shape.
    pub fn new(kind: &str, seq: u64, data: &serde_json::Value) -> Self {
        Self {
            kind: kind.to_owned(),
            seq,
            timestamp: time_util::now_rfc3339(),
            data: to_raw(data),
        }
    }

    /// The data as a JSON value (parsed again).
    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str(self.data.get()).unwrap_or(serde_json::Value::Null)
    }
}

fn raw_json<S: Serializer>(data: &Arc<RawValue>, s: S) -> Result<S::Ok, S::Error> {
    data.serialize(s)
}

/// `data` as JSON text; `null` for what JSON cannot hold (a map with
/// non-string keys).
fn to_raw<T: Serialize + ?Sized>(data: &T) -> Arc<RawValue> {
    serde_json::value::to_raw_value(data)
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
        .into()
}

#[derive(Default)]
struct Backlog {
    next_seq: u64,
    events: VecDeque<Event>,
    bytes: usize,
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Next sequence number and the backlog, under one lock so that a
    /// subscriber's backlog and live stream neither overlap nor leave a gap.
    state: Mutex<Backlog>,
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
            state: Mutex::new(Backlog {
                next_seq: 1,
                events: VecDeque::with_capacity(BACKLOG),
                bytes: 0,
            }),
        }
    }

    pub fn publish(&self, kind: &str, data: serde_json::Value) -> u64 {
        self.publish_json(kind, &data)
    }

    /// Publishes anything serializable, without building a JSON value first.
    pub fn publish_json<T: Serialize + ?Sized>(&self, kind: &str, data: &T) -> u64 {
        // Serialized outside the lock.
        let data = to_raw(data);
        let size = data.get().len();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = state.next_seq;
        state.next_seq += 1;
        let event = Event {
            kind: kind.to_owned(),
            seq,
            timestamp: time_util::now_rfc3339(),
            data,
        };
        while !state.events.is_empty()
            && (state.events.len() >= BACKLOG || state.bytes + size > BACKLOG_BYTES)
        {
            if let Some(old) = state.events.pop_front() {
                state.bytes -= old.data.get().len();
            }
        }
        state.bytes += size;
        state.events.push_back(event.clone());
        // No subscribers is fine.
        let _ = self.tx.send(event);
        seq
    }

    /// Subscribes; with `after_seq` the retained events after it come first.
    pub fn subscribe(&self, after_seq: Option<u64>) -> Subscription {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let backlog = match after_seq {
            Some(after) => state
                .events
                .iter()
                .filter(|e| e.seq > after)
                .cloned()
                .collect(),
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
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
            - 1
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

    #[test]
    fn the_backlog_keeps_at_most_its_byte_bound_newest_first() {
        let bus = EventBus::new();
        // Each event's data is a string of a quarter of the bound.
        let big = "x".repeat(BACKLOG_BYTES / 4);
        for _ in 0..10 {
            bus.publish_json("big", &big);
        }
        let kept = bus.subscribe(Some(0)).backlog;
        let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![8, 9, 10], "the newest that fit");
        let bytes: usize = kept.iter().map(|e| e.data.get().len()).sum();
        assert!(bytes <= BACKLOG_BYTES, "{bytes} bytes kept");
        // Small events after it are kept beside what still fits.
        bus.publish("small", serde_json::json!({ "n": 1 }));
        let kept = bus.subscribe(Some(0)).backlog;
        assert_eq!(
            kept.last().map(|e| (e.seq, e.data())),
            Some((11, serde_json::json!({ "n": 1 })))
        );
        // An event larger than the bound is still published and kept alone.
        let huge = "y".repeat(BACKLOG_BYTES + 1);
        bus.publish_json("huge", &huge);
        let kept = bus.subscribe(Some(0)).backlog;
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![12]);
    }

    #[test]
    fn events_serialize_with_their_data_inline() {
        let bus = EventBus::new();
        bus.publish("x", serde_json::json!({ "a": [1, 2] }));
        let event = bus.subscribe(Some(0)).backlog.remove(0);
        let text = serde_json::to_string(&event).unwrap_or_default();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back["type"], "x");
        assert_eq!(back["seq"], 1);
        assert_eq!(back["data"], serde_json::json!({ "a": [1, 2] }));
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
