//! Command-line options of the control plane (also embedded by the root
//! standalone binary).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::auth::Token;
use crate::api::limits::RateLimit;
use crate::api::ApiConfig;

/// Log output format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The YAML config file.
    #[arg(long, default_value = "deploy/switchyard.yaml")]
    pub config: PathBuf,
    /// Where the sled database lives.
    #[arg(long, default_value = "./data/control-plane")]
    pub data_dir: PathBuf,
    /// Folder file content sources are read from (default: the config
    /// file's folder).
    #[arg(long)]
    pub content_root: Option<PathBuf>,
    /// REST + WebSocket listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub api_listen: SocketAddr,
    /// gRPC listener (data-plane sync, admin, health, reflection).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Config versions kept in history (for rollback).
    #[arg(long, default_value_t = 100)]
    pub history_limit: usize,
    /// How long a command fan-out (cache clear) waits for the nodes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
    /// Do not watch the config file and the content root for changes.
    #[arg(long)]
    pub no_watch: bool,
    /// API bearer tokens as `id:scope:secret` (scope `read` or `admin`);
    /// comma-separated in the environment. None: the API is open and must
    /// listen on loopback.
    #[arg(
        long = "api-token",
        env = "SWITCHYARD_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<Token>,
    /// A file of API tokens, one `id:scope:secret` per line (`#` comments
    /// and blank lines allowed), added to `--api-token`; keeps the secrets
    /// out of the process list and the environment.
    #[arg(long, env = "SWITCHYARD_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Requests per second per client IP on the REST API (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rps: f64,
    /// Burst allowed above the rate (default: twice the rate).
    #[arg(long)]
    pub rate_limit_burst: Option<f64>,
    /// Origins allowed to call the API from a browser (CORS off when none).
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Largest request body the API accepts (413 above).
    #[arg(long, default_value_t = crate::api::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Tick of history points, `metrics_update` events and alert checks.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub metrics_interval: Duration,
    /// History the per-rule alerts (error rate, p95) look at.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub alert_window: Duration,
    /// Rule error-rate alert: percent of 5xx answers above which it fires.
    #[arg(long, default_value_t = 5.0)]
    pub alert_error_rate: f64,
    /// Rule latency alert: p95 in milliseconds above which it fires.
    #[arg(long, default_value_t = 1000.0)]
    pub alert_p95_ms: f64,
    /// Backend alert: percent of healthy servers below which it fires.
    #[arg(long, default_value_t = 90.0)]
    pub alert_availability: f64,
    /// Node alert: percent of its memory limit above which it fires.
    #[arg(long, default_value_t = 80.0)]
    pub alert_memory: f64,
    /// Answers a rule needs in the window before its alerts are judged.
    #[arg(long, default_value_t = 10)]
    pub alert_min_requests: u64,
    /// Percent of the threshold a value must come back past to resolve.
    #[arg(long, default_value_t = 10.0)]
    pub alert_hysteresis: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: PathBuf::from("deploy/switchyard.yaml"),
            data_dir: PathBuf::from("./data/control-plane"),
            content_root: None,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            log_format: LogFormat::Text,
            history_limit: 100,
            command_timeout: Duration::from_secs(5),
            no_watch: false,
            api_tokens: Vec::new(),
            api_tokens_file: None,
            rate_limit_rps: 0.0,
            rate_limit_burst: None,
            cors_origins: Vec::new(),
            max_body_bytes: crate::api::MAX_BODY_BYTES,
            metrics_interval: crate::metrics::DEFAULT_INTERVAL,
            alert_window: Duration::from_secs(60),
            alert_error_rate: 5.0,
            alert_p95_ms: 1000.0,
            alert_availability: 90.0,
            alert_memory: 80.0,
            alert_min_requests: 10,
            alert_hysteresis: 10.0,
        }
    }
}

impl Options {
    /// The REST middleware settings these options ask for.
    pub fn api_config(&self) -> ApiConfig {
        let rate_limit = (self.rate_limit_rps > 0.0).then(|| RateLimit {
            per_second: self.rate_limit_rps,
            burst: self
                .rate_limit_burst
                .unwrap_or(self.rate_limit_rps * 2.0)
                .max(1.0),
        });
        ApiConfig {
            tokens: self.api_tokens.clone(),
            rate_limit,
            cors_origins: self.cors_origins.clone(),
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The alert thresholds these options ask for (percentages become
    /// fractions).
    pub fn alert_settings(&self) -> crate::alerts::AlertSettings {
        crate::alerts::AlertSettings {
            window: self.alert_window,
            error_rate: self.alert_error_rate / 100.0,
            p95_ms: self.alert_p95_ms,
            availability: self.alert_availability / 100.0,
            memory: self.alert_memory / 100.0,
            min_requests: self.alert_min_requests,
            hysteresis: self.alert_hysteresis / 100.0,
        }
    }

    /// The content root: explicit, or the config file's folder.
    pub fn effective_content_root(&self) -> PathBuf {
        if let Some(root) = &self.content_root {
            return root.clone();
        }
        match self.config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// The control-plane binary's command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "switchyard-control-plane",
    version,
    about = "Switchyard control plane"
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
}
