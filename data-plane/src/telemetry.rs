//! Per-request observability: the counters and latency histograms every
//! request updates, and the OpenTelemetry span it gets when OTLP export is
//! configured through the standard `OTEL_*` environment variables.
//!
//! With no exporter configured nothing is allocated and a request pays one
//! branch on a `OnceLock` for tracing. Spans continue the client's W3C
//! `traceparent`/`tracestate` and the proxy forwards its own span as the
//! backend's parent.

mod otlp;
mod request;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::metrics::Metrics;

pub use otlp::OtlpSettings;
pub use request::{finish_request, request_bytes, RequestSpan};

/// Installed once per process when OTLP export is on.
static OTEL: OnceLock<otlp::Otel> = OnceLock::new();

/// The tracer, when span export is on.
pub(crate) fn tracer() -> Option<&'static opentelemetry_sdk::trace::SdkTracer> {
    OTEL.get().and_then(|o| o.tracer.as_ref())
}

/// Starts OTLP export when the environment asks for it (idempotent: the
/// first data plane of the process wins). Returns whether export is on.
pub fn init(node_id: &str, metrics: &Arc<Metrics>) -> bool {
    let settings = OtlpSettings::from_env();
    if !settings.enabled() {
        return false;
    }
    if OTEL.get().is_some() {
        return true;
    }
    match otlp::Otel::start(&settings, node_id, metrics.clone()) {
        Ok(otel) => {
            tracing::info!(
                endpoint = %settings.describe_endpoint(),
                traces = settings.traces,
                metrics = settings.metrics,
                "OpenTelemetry export on"
            );
            let _ = OTEL.set(otel);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "OpenTelemetry export not started");
            false
        }
    }
}

/// Flushes and stops the exporters (bounded); call at shutdown.
pub async fn shutdown(timeout: Duration) {
    let Some(otel) = OTEL.get() else { return };
    let flushed = tokio::task::spawn_blocking(move || otel.shutdown(timeout));
    if tokio::time::timeout(timeout + Duration::from_secs(1), flushed)
        .await
        .is_err()
    {
        tracing::warn!("OpenTelemetry exporters did not flush in time");
    }
}
