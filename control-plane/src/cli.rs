//! The binary's edge: flags, logging, binding, signals and exit codes
//! (64 for a bad config, 1 for anything else).

use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::options::{Cli, LogFormat, Options};
use crate::server::ControlPlane;

/// How long in-flight work may take after SIGINT/SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Exit code for an invalid configuration (EX_USAGE... EX_DATAERR is 65;
/// 64 is what the project settled on).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Logs to stderr; `RUST_LOG` wins over the default `info`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // No colour codes in log files and pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: an embedding binary may have installed a subscriber already.
    // The OpenTelemetry layer is `None` (a no-op) unless OTLP is configured.
    let _ = match format {
        LogFormat::Text => builder.finish().with(crate::telemetry::layer()).try_init(),
        LogFormat::Json => builder
            .json()
            .finish()
            .with(crate::telemetry::layer())
            .try_init(),
    };
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The control-plane binary.
pub fn cli_main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.options.log_format);
    block_on_runtime(run(cli.options))
}

/// Runs a binary's main future on a multi-thread runtime; exit 1 when the
/// runtime cannot start.
pub fn block_on_runtime(main: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A listener that could not be bound, named by its role and address.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the {role} listener on {addr}: {error}")]
pub struct BindError {
    role: &'static str,
    addr: std::net::SocketAddr,
    error: std::io::Error,
}

/// Binds the `role` listener (also used by the standalone binary).
pub async fn bind(
    role: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| BindError { role, addr, error })
}

/// Prints a start-up error and gives its exit code: 64 for a bad config.
pub fn start_failed(e: &crate::server::StartError) -> ExitCode {
    eprintln!("error: {e}");
    if e.is_config_error() {
        ExitCode::from(EXIT_BAD_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

async fn run(options: Options) -> ExitCode {
    // Validate, bind, and only then open sled: a bad config or a port in
    // use stops the process before anything is written.
    let validated = match ControlPlane::validate(&options).await {
        Ok(v) => v,
        Err(e) => return start_failed(&e),
    };
    let api = match bind("api", options.api_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let grpc = match bind("grpc", options.grpc_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prepared = match validated.load().await {
        Ok(p) => p,
        Err(e) => return start_failed(&e),
    };
    for (role, listener) in [("api", &api), ("grpc", &grpc)] {
        match listener.local_addr() {
            Ok(addr) => println!("listening {role} {addr}"),
            Err(e) => {
                eprintln!("error: cannot read the {role} listener address: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = std::io::stdout().flush();

    let (sig_tx, mut sig_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        sig_tx.send_replace(true);
    });
    let mut serve_rx = sig_rx.clone();
    let serve = prepared.serve(api, grpc, async move {
        let _ = serve_rx.wait_for(|s| *s).await;
    });
    let drain_deadline = async move {
        let _ = sig_rx.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    tokio::select! {
        result = serve => match result {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ = drain_deadline => {
            tracing::warn!("drain limit reached; exiting with work in flight");
            ExitCode::SUCCESS
        }
    }
}
