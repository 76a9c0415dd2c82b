//! OTLP/gRPC export set up from the standard environment variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `..._TRACES_ENDPOINT`,
//! `..._METRICS_ENDPOINT`) turns it on; `OTEL_SDK_DISABLED=true`,
//! `OTEL_TRACES_EXPORTER=none` and `OTEL_METRICS_EXPORTER=none` turn parts
//! off; headers, timeouts, sampler (`OTEL_TRACES_SAMPLER`), batching
//! (`OTEL_BSP_*`), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are
//! read by the OpenTelemetry SDK itself.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{MeterProvider as _, ObservableCounter, ObservableGauge};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
pub use switchyard_shared::otlp::OtlpSettings;

use crate::metrics::process::ProcessStats;
use crate::metrics::Metrics;

/// The instrumentation scope and default `service.name`.
pub const SERVICE_NAME: &str = "switchyard-data-plane";

/// Why export could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("cannot start the exporter runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running exporters.
pub struct Otel {
    pub tracer: Option<SdkTracer>,
    traces: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    /// Kept so their callbacks stay registered.
    _instruments: Vec<Instrument>,
    /// Drives the exporters' gRPC channels whatever runtime (if any) the
    /// caller runs on; lives as long as the process.
    _runtime: tokio::runtime::Runtime,
}

#[allow(dead_code)] // held for their registration only
enum Instrument {
    Counter(ObservableCounter<u64>),
    CounterF(ObservableCounter<f64>),
    Gauge(ObservableGauge<u64>),
}

impl Otel {
    pub fn start(
        settings: &OtlpSettings,
        node_id: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(OtlpError::Runtime)?;
        // tonic channels spawn their workers on the current runtime.
        let _enter = runtime.enter();
        let resource = resource(node_id);
        let (tracer, traces) = if settings.traces {
            let exporter = SpanExporter::builder().with_tonic().build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone())
                .build();
            (Some(provider.tracer(SERVICE_NAME)), Some(provider))
        } else {
            (None, None)
        };
        let (meters, instruments) = if settings.metrics {
            let exporter = MetricExporter::builder().with_tonic().build()?;
            let mut reader = PeriodicReader::builder(exporter);
            if let Some(interval) = settings.metric_interval {
                reader = reader.with_interval(interval);
            }
            let provider = SdkMeterProvider::builder()
                .with_reader(reader.build())
                .with_resource(resource)
                .build();
            let instruments = instruments(&provider, metrics);
            (Some(provider), instruments)
        } else {
            (None, Vec::new())
        };
        Ok(Self {
            tracer,
            traces,
            meters,
            _instruments: instruments,
            _runtime: runtime,
        })
    }

    /// Flushes and stops; blocking.
    pub fn shutdown(&self, timeout: Duration) {
        if let Some(t) = &self.traces {
            if let Err(e) = t.shutdown_with_timeout(timeout) {
                tracing::debug!(error = %e, "span exporter shutdown");
            }
        }
        if let Some(m) = &self.meters {
            if let Err(e) = m.shutdown_with_timeout(timeout) {
                tracing::debug!(error = %e, "metric exporter shutdown");
            }
        }
    }
}

fn resource(node_id: &str) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(SERVICE_NAME);
    }
    builder
        .with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()))
        .build()
}

/// Observable instruments over the same counters `/metrics` shows: the
/// callbacks run at export time, so requests pay nothing extra.
fn instruments(provider: &SdkMeterProvider, metrics: Arc<Metrics>) -> Vec<Instrument> {
    let meter = provider.meter(SERVICE_NAME);
    let m = metrics.clone();
    let requests = meter
        .u64_observable_counter("switchyard.requests")
        .with_description("Requests answered, by rule")
        .with_callback(move |o| {
            for (rule, r) in m.rules() {
                o.observe(r.requests.load(Relaxed), &[KeyValue::new("rule", rule)]);
            }
        })
        .build();
    let m = metrics.clone();
    let errors = meter
        .u64_observable_counter("switchyard.errors")
        .with_description("Requests answered with a 5xx status, by rule")
        .with_callback(move |o| {
            for (rule, r) in m.rules() {
                o.observe(r.errors.load(Relaxed), &[KeyValue::new("rule", rule)]);
            }
        })
        .build();
    let m = metrics.clone();
    let upstream = meter
        .u64_observable_counter("switchyard.upstream.requests")
        .with_description("Requests sent to upstream servers")
        .with_callback(move |o| {
            for ((backend, server), s) in m.servers() {
                o.observe(
                    s.requests.load(Relaxed),
                    &[
                        KeyValue::new("backend", backend),
                        KeyValue::new("server", server),
                    ],
                );
            }
        })
        .build();
    let m = metrics;
    let connections = meter
        .u64_observable_gauge("switchyard.active_connections")
        .with_description("Client connections open on the proxy listeners")
        .with_callback(move |o| o.observe(m.active_connections.load(Relaxed), &[]))
        .build();
    let memory = meter
        .u64_observable_gauge("process.memory.usage")
        .with_unit("By")
        .with_callback(|o| {
            if let Some(rss) = ProcessStats::read().rss_bytes {
                o.observe(rss, &[]);
            }
        })
        .build();
    let cpu = meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_callback(|o| {
            if let Some(cpu) = ProcessStats::read().cpu_seconds {
                o.observe(cpu, &[]);
            }
        })
        .build();
    vec![
        Instrument::Counter(requests),
        Instrument::Counter(errors),
        Instrument::Counter(upstream),
        Instrument::Gauge(connections),
        Instrument::Gauge(memory),
        Instrument::CounterF(cpu),
    ]
}
