//! Which OpenTelemetry exports the standard environment asks for (both
//! planes read it the same way): `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
//! per-signal `..._TRACES_ENDPOINT`, `..._METRICS_ENDPOINT`) turns export
//! on; `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` and
//! `OTEL_METRICS_EXPORTER=none` turn parts off.

use std::time::Duration;

/// What the environment asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpSettings {
    pub endpoint: Option<String>,
    pub traces: bool,
    pub metrics: bool,
    /// `OTEL_METRIC_EXPORT_INTERVAL`, milliseconds.
    pub metric_interval: Option<Duration>,
}

impl OtlpSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Self::default();
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let exporter_on = |var: &str| {
            set(var).is_none_or(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("otlp")))
        };
        let traces = exporter_on("OTEL_TRACES_EXPORTER")
            && (endpoint.is_some() || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some());
        let metrics = exporter_on("OTEL_METRICS_EXPORTER")
            && (endpoint.is_some() || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some());
        let metric_interval = set("OTEL_METRIC_EXPORT_INTERVAL")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        Self {
            endpoint,
            traces,
            metrics,
            metric_interval,
        }
    }

    pub fn enabled(&self) -> bool {
        self.traces || self.metrics
    }

    pub fn describe_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| "per-signal endpoints".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> OtlpSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtlpSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn export_is_off_without_an_endpoint_and_follows_the_standard_switches() {
        assert!(!settings(&[]).enabled());
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]);
        assert!(on.traces && on.metrics);
        let off = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(!off.enabled());
        let traces_only = settings(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4317",
            ),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(traces_only.traces && !traces_only.metrics);
        let no_traces = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ]);
        assert!(!no_traces.traces && no_traces.metrics);
        assert_eq!(
            no_traces.metric_interval,
            Some(std::time::Duration::from_millis(250))
        );
    }
}
