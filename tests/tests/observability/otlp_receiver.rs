//! A real OTLP/gRPC receiver (the collector's trace and metrics services,
//! served by tonic with opentelemetry-proto's generated types) and a
//! backend that records the trace context it receives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// A received span with its resource's service name and flat attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub service_name: String,
    pub span: Span,
    pub attributes: HashMap<String, String>,
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<Received>>,
    metrics: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Services(Arc<Store>);

fn value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Services {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap_or_else(|e| e.into_inner());
        for rs in request.into_inner().resource_spans {
            let service_name = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(value)
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value(kv)))
                        .collect();
                    spans.push(Received {
                        service_name: service_name.clone(),
                        span,
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Services {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.0.metrics.lock().unwrap_or_else(|e| e.into_inner());
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    store: Arc<Store>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind otlp");
        let addr = listener.local_addr().expect("otlp addr");
        let services = Services::default();
        let store = services.0.clone();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(services.clone()))
                .add_service(MetricsServiceServer::new(services))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Receiver { addr, store, task }
    }

    pub fn spans(&self) -> Vec<Received> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn metric_names(&self) -> Vec<String> {
        self.store
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (traceparent, tracestate) as received.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A backend that answers 200 and records the trace context it got.
pub struct TraceBackend {
    pub addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl TraceBackend {
    pub async fn start() -> TraceBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        if let Some(tp) = header("traceparent") {
                            record
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((tp, header("tracestate")));
                        }
                        async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"traced\n",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TraceBackend { addr, seen, task }
    }

    pub fn traceparents(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TraceBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
