//! OpenTelemetry for the control plane, off unless the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or a per-signal endpoint) is set. Traces:
//! the `tracing` spans of config changes and rollouts go out over OTLP/gRPC
//! through a `tracing-opentelemetry` layer. Metrics: fleet totals, node
//! counts and the config version as observable instruments, read at export
//! time. `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`,
//! `OTEL_METRICS_EXPORTER=none`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and
//! `OTEL_METRIC_EXPORT_INTERVAL` are honoured.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::service::Service;
pub use switchyard_shared::otlp::OtlpSettings;

pub const SERVICE_NAME: &str = "switchyard-control-plane";

struct Otel {
    settings: OtlpSettings,
    tracer: Option<SdkTracer>,
    traces: Option<SdkTracerProvider>,
    meters: Mutex<Option<SdkMeterProvider>>,
    /// Drives the exporters' gRPC channels independently of the caller's
    /// runtime (tracing is set up before the main runtime exists).
    runtime: tokio::runtime::Runtime,
}

static OTEL: OnceLock<Option<Otel>> = OnceLock::new();

fn otel() -> Option<&'static Otel> {
    OTEL.get_or_init(start).as_ref()
}

fn start() -> Option<Otel> {
    let settings = OtlpSettings::from_env();
    if !settings.traces && !settings.metrics {
        return None;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export off: cannot start its runtime: {e}");
            return None;
        }
    };
    let (tracer, traces) = if settings.traces {
        let _enter = runtime.enter();
        match SpanExporter::builder().with_tonic().build() {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build();
                (Some(provider.tracer(SERVICE_NAME)), Some(provider))
            }
            Err(e) => {
                eprintln!("warning: OpenTelemetry span export off: {e}");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    Some(Otel {
        settings,
        tracer,
        traces,
        meters: Mutex::new(None),
        runtime,
    })
}

fn resource() -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(SERVICE_NAME);
    }
    builder.build()
}

/// The layer that exports `tracing` spans, when span export is on (an
/// `Option` layer is a no-op when `None`).
pub fn layer<S>() -> Option<OpenTelemetryLayer<S, SdkTracer>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let tracer = otel()?.tracer.clone()?;
    Some(OpenTelemetryLayer::new(tracer))
}

/// Starts metric export over the service's figures, when asked for.
pub fn start_metrics(service: &Service) {
    let Some(otel) = otel() else { return };
    if !otel.settings.metrics {
        return;
    }
    let mut meters = otel.meters.lock().unwrap_or_else(|e| e.into_inner());
    if meters.is_some() {
        return;
    }
    let _enter = otel.runtime.enter();
    let exporter = match MetricExporter::builder().with_tonic().build() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "OpenTelemetry metric export off");
            return;
        }
    };
    let mut reader = PeriodicReader::builder(exporter);
    if let Some(interval) = otel.settings.metric_interval {
        reader = reader.with_interval(interval);
    }
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.build())
        .with_resource(resource())
        .build();
    let meter = provider.meter(SERVICE_NAME);
    let s = service.clone();
    // Instruments stay registered with the provider once built.
    let _requests = meter
        .u64_observable_counter("switchyard.fleet.requests")
        .with_description("Requests answered by the fleet, by rule")
        .with_callback(move |o| {
            let fleet = s.metrics_hub().fleet(s.nodes());
            for (rule, r) in &fleet.totals.rules {
                o.observe(r.requests, &[KeyValue::new("rule", rule.clone())]);
            }
        })
        .build();
    let s = service.clone();
    let _errors = meter
        .u64_observable_counter("switchyard.fleet.errors")
        .with_description("Requests the fleet answered with a 5xx status, by rule")
        .with_callback(move |o| {
            let fleet = s.metrics_hub().fleet(s.nodes());
            for (rule, r) in &fleet.totals.rules {
                o.observe(r.errors, &[KeyValue::new("rule", rule.clone())]);
            }
        })
        .build();
    let s = service.clone();
    let _nodes = meter
        .u64_observable_gauge("switchyard.nodes.connected")
        .with_description("Data planes with an open sync stream")
        .with_callback(move |o| {
            let n = s.nodes().list().iter().filter(|n| n.connected).count();
            o.observe(n as u64, &[]);
        })
        .build();
    let s = service.clone();
    let _version = meter
        .u64_observable_gauge("switchyard.config.version")
        .with_description("Current configuration version")
        .with_callback(move |o| o.observe(s.current().version, &[]))
        .build();
    *meters = Some(provider);
}

/// Flushes and stops the exporters (blocking, bounded).
pub fn shutdown(timeout: Duration) {
    let Some(Some(otel)) = OTEL.get() else { return };
    if let Some(t) = &otel.traces {
        let _ = t.shutdown_with_timeout(timeout);
    }
    let meters = otel.meters.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = meters.as_ref() {
        let _ = m.shutdown_with_timeout(timeout);
    }
}
