//! Command-line options of the data plane, reusable by the standalone binary
//! through `#[command(flatten)]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything a data plane needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// gRPC URL of the control plane.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub control_plane: String,

    /// Name this node reports to the control plane [default: <hostname>-<pid>].
    #[arg(long)]
    pub node_id: Option<String>,

    /// Proxy listener address (repeatable). Without it the config's
    /// `listeners` are bound once the first snapshot is applied (else
    /// 0.0.0.0:8080).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9091", value_name = "ADDR")]
    pub admin_listen: SocketAddr,

    /// Where the last good snapshot and its blobs are kept
    /// [default: ./data/data-plane/<node-id>].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Log format on stderr (`RUST_LOG` selects what is logged).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Tokio worker threads [default: one per core].
    #[arg(long)]
    pub worker_threads: Option<usize>,

    /// How long in-flight requests may run on after a shutdown signal.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How often a metrics report is sent to the control plane.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub metrics_interval: Duration,

    /// Do not record per-request metrics (rule and upstream counters,
    /// latency histograms); a baseline for measuring their cost.
    #[arg(long)]
    pub no_request_metrics: bool,
}

impl Default for Options {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        Self {
            control_plane: "http://127.0.0.1:50051".to_owned(),
            node_id: None,
            listen: Vec::new(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            cache_dir: None,
            log_format: LogFormat::Text,
            worker_threads: None,
            shutdown_grace: Duration::from_secs(10),
            metrics_interval: Duration::from_secs(5),
            no_request_metrics: false,
        }
    }
}

impl Options {
    /// The node id, defaulting to `<hostname>-<pid>` (unique per process on
    /// a host, stable enough to read in the fleet view).
    pub fn resolved_node_id(&self) -> String {
        match &self.node_id {
            Some(id) => id.clone(),
            None => format!("{}-{}", hostname(), std::process::id()),
        }
    }

    /// The cache folder, defaulting to `./data/data-plane/<node-id>`.
    pub fn resolved_cache_dir(&self, node_id: &str) -> PathBuf {
        match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => PathBuf::from("data").join("data-plane").join(node_id),
        }
    }
}

fn hostname() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    #[test]
    fn defaults_match_the_command_line() {
        let parsed = Cli::try_parse_from(["dp"]).map(|c| c.options);
        let parsed = parsed.map_err(|e| e.to_string());
        let defaults = Options::default();
        let parsed = parsed.as_ref().map(|o| {
            (
                o.control_plane.clone(),
                o.admin_listen,
                o.shutdown_grace,
                o.metrics_interval,
                o.log_format,
            )
        });
        assert_eq!(
            parsed,
            Ok((
                defaults.control_plane,
                defaults.admin_listen,
                defaults.shutdown_grace,
                defaults.metrics_interval,
                defaults.log_format
            ))
        );
    }

    #[test]
    fn listen_is_repeatable_and_cache_dir_defaults_per_node() {
        let cli = Cli::try_parse_from([
            "dp",
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:2",
            "--node-id",
            "n1",
        ]);
        let options = match cli {
            Ok(c) => c.options,
            Err(e) => panic!("parse failed: {e}"),
        };
        assert_eq!(options.listen.len(), 2);
        assert_eq!(options.resolved_node_id(), "n1");
        assert_eq!(
            options.resolved_cache_dir("n1"),
            PathBuf::from("data/data-plane/n1")
        );
    }
}
