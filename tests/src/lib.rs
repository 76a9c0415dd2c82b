//! Helpers for the end-to-end tests: start the real control-plane and
//! data-plane processes on ephemeral loopback ports, real HTTP backends, and
//! poll with deadlines instead of sleeping.

pub mod backend;
pub mod process;
pub mod python;
pub mod stack;

pub use backend::{Backend, BackendMode};
pub use process::{ControlPlane, DataPlane, Proc};
pub use stack::Stack;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails after `timeout` saying
/// what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The body of a successful-or-not GET as text; `None` on a transport error.
pub async fn get_text(url: &str) -> Option<String> {
    client().get(url).send().await.ok()?.text().await.ok()
}

/// Sends `req` and reads the whole answer: status, headers and the body as
/// JSON when it parses, else as a JSON string.
pub async fn send_for_json(
    req: reqwest::RequestBuilder,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, body)
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client builds")
}
