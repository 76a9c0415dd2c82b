//! `GET /ws/events`: the event stream over WebSocket, one JSON message per
//! event (`{type, seq, timestamp, data}`), filtered by `types` and resumable
//! with `after_seq` (alias `since`). When the events after that number are
//! no longer retained the first message is `resync_required`; a subscriber
//! that falls behind the bus's bounded buffer gets a `lagged` message and a
//! close. The server pings every [`PING_EVERY`] and drops a client silent
//! for [`SILENCE_LIMIT`].

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::events::{Event, EventBus};
use crate::service::Service;

pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Comma-separated event types; absent: all.
    pub types: Option<String>,
    /// Replay retained events after this sequence number first.
    pub after_seq: Option<u64>,
    /// Same as `after_seq`.
    pub since: Option<u64>,
}

/// Read buffer and largest message accepted from a subscriber.
const SUBSCRIBER_READ_BUFFER: usize = 4 * 1024;
const SUBSCRIBER_MAX_MESSAGE: usize = 64 * 1024;

/// Close code for "policy violation"-like lag: the client must resume.
const CLOSE_LAGGED: u16 = 4000;

pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let types: Vec<String> = q
        .types
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let service = state.service.clone();
    let after_seq = q.after_seq.or(q.since);
    // Clients only send pongs and a close: a small read buffer (the default
    // is 128 KiB per connection) keeps 1,000 subscribers cheap.
    ws.read_buffer_size(SUBSCRIBER_READ_BUFFER)
        .max_message_size(SUBSCRIBER_MAX_MESSAGE)
        .on_upgrade(move |socket| run(service, socket, after_seq, types))
}

async fn run(service: Service, mut socket: WebSocket, after_seq: Option<u64>, types: Vec<String>) {
    service
        .metrics_hub()
        .websocket_clients
        .fetch_add(1, Relaxed);
    let _counted = ClientGuard(service.clone());
    let mut after_seq = after_seq;
    if let Some(after) = after_seq {
        if gap(service.events(), after) {
            let last = service.events().last_seq();
            let msg = control(
                "resync_required",
                last,
                json!({
                    "requested_after": after,
                    "last_seq": last,
                    "reason": "the events after that sequence number are no longer retained; reload state, then follow from last_seq",
                }),
            );
            if socket.send(msg).await.is_err() {
                return;
            }
            after_seq = Some(last);
        }
    }
    let mut events = Box::pin(service.events().follow(after_seq, types));
    let stopping = service.stopping();
    tokio::pin!(stopping);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(event)) => {
                    let text = serde_json::to_string(&event).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Err(last)) => {
                    let notice = control("lagged", last, json!({
                        "resume_after": last,
                        "reason": "this subscriber fell too far behind; reconnect with after_seq=resume_after",
                    }));
                    let _ = socket.send(notice).await;
                    let frame = CloseFrame {
                        code: CLOSE_LAGGED,
                        reason: format!("too slow; resume with after_seq={last}").into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                None => return,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum; anything else from the client
                // is ignored; a close or error ends the session.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            _ = &mut stopping => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}

/// Whether the events after `after` are gone from the backlog (or `after`
/// is beyond the last seq: a number from an earlier control plane run).
fn gap(bus: &EventBus, after: u64) -> bool {
    let last = bus.last_seq();
    if after >= last {
        return after > last;
    }
    let retained = bus.subscribe(Some(after)).backlog;
    retained.first().is_none_or(|e| e.seq > after + 1)
}

/// A message of the stream itself (not a bus event), same shape.
fn control(kind: &str, seq: u64, data: serde_json::Value) -> Message {
    let event = Event::new(kind, seq, &data);
    Message::Text(serde_json::to_string(&event).unwrap_or_default().into())
}

/// Counts a subscriber (for `/metrics`) while the session lives.
struct ClientGuard(Service);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics_hub().websocket_clients.fetch_sub(1, Relaxed);
    }
}
