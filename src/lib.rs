//! The standalone deployment behind `cargo run --release`: a control plane,
//! one data plane and two demo backends in one process. The data plane still
//! speaks real gRPC to the control plane over loopback, exactly as separate
//! processes would. A library so the end-to-end tests can build the same
//! entry point into a binary of their own.

mod demo;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

use switchyard_control_plane as cp;
use switchyard_data_plane as dp;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Switchyard standalone: control plane + one data plane"
)]
struct Cli {
    /// The YAML config file the control plane watches.
    #[arg(long, default_value = "deploy/switchyard.yaml")]
    config: PathBuf,
    /// Folder for the control plane's sled database and the data plane's cache.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// REST API listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    api_listen: SocketAddr,
    /// gRPC listener (data-plane sync, admin API).
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
    /// Proxy listener.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Data-plane admin listener (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:9091")]
    admin_listen: SocketAddr,
    /// Where the demo backends listen (comma-separated); the example
    /// config forwards to these two addresses.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = ["127.0.0.1:9101", "127.0.0.1:9102"]
    )]
    demo_backends: Vec<SocketAddr>,
    /// Do not start the demo backends.
    #[arg(long)]
    no_demo_backends: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = cp::LogFormat::Text)]
    log_format: cp::LogFormat,
}

/// Runs the standalone binary: 64 for a bad config, 1 for any other
/// start-up or serving error.
pub fn cli_main() -> ExitCode {
    let cli = Cli::parse();
    cp::cli::init_tracing(cli.log_format);
    cp::cli::block_on_runtime(run(cli))
}

/// Names the demo backends answer with, in `--demo-backends` order.
const DEMO_NAMES: [&str; 4] = ["one", "two", "three", "four"];

async fn run(cli: Cli) -> ExitCode {
    let cp_options = cp::Options {
        config: cli.config.clone(),
        data_dir: cli.data_dir.join("control-plane"),
        api_listen: cli.api_listen,
        grpc_listen: cli.grpc_listen,
        log_format: cli.log_format,
        ..cp::Options::default()
    };
    let validated = match cp::ControlPlane::validate(&cp_options).await {
        Ok(v) => v,
        Err(e) => return cp::cli::start_failed(&e),
    };
    // Every listener is bound before sled is opened: a port in use stops
    // the process with nothing written.
    let listeners = match Listeners::bind(&cli).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let prepared = match validated.load().await {
        Ok(p) => p,
        Err(e) => return cp::cli::start_failed(&e),
    };
    match start(cli, listeners, prepared).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Listeners {
    api: TcpListener,
    grpc: TcpListener,
    proxy: TcpListener,
    admin: TcpListener,
}

impl Listeners {
    async fn bind(cli: &Cli) -> anyhow::Result<Self> {
        Ok(Self {
            api: cp::cli::bind("api", cli.api_listen).await?,
            grpc: cp::cli::bind("grpc", cli.grpc_listen).await?,
            proxy: cp::cli::bind("proxy", cli.listen).await?,
            admin: cp::cli::bind("admin", cli.admin_listen).await?,
        })
    }
}

async fn start(cli: Cli, listeners: Listeners, prepared: cp::Prepared) -> anyhow::Result<()> {
    let Listeners {
        api,
        grpc,
        proxy,
        admin,
    } = listeners;
    let grpc_addr = grpc.local_addr()?;
    let api_addr = api.local_addr()?;
    let proxy_addr = proxy.local_addr()?;
    let admin_addr = admin.local_addr()?;

    let dp_options = dp::Options {
        control_plane: format!("http://{grpc_addr}"),
        node_id: Some("standalone".to_owned()),
        cache_dir: Some(cli.data_dir.join("data-plane").join("standalone")),
        ..dp::Options::default()
    };
    let data_plane = dp::DataPlane::new(dp_options).context("cannot start the data plane")?;

    if !cli.no_demo_backends {
        for (i, addr) in cli.demo_backends.iter().enumerate() {
            let name = DEMO_NAMES.get(i).copied().unwrap_or("extra");
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tokio::spawn(demo::serve(name, l));
                }
                // Someone may run their own service there: not fatal.
                Err(e) => tracing::warn!(%addr, error = %e, "demo backend not started"),
            }
        }
    }

    for (role, addr) in [
        ("api", api_addr),
        ("grpc", grpc_addr),
        ("proxy", proxy_addr),
        ("admin", admin_addr),
    ] {
        println!("listening {role} {addr}");
    }
    print_welcome(api_addr, proxy_addr, admin_addr);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        cp::cli::shutdown_signal().await;
        tracing::info!("shutdown requested");
        stop_tx.send_replace(true);
    });
    let (cp_result, dp_result) = tokio::join!(
        prepared.serve(api, grpc, stopped(stop_rx.clone())),
        data_plane.serve(vec![proxy], admin, stopped(stop_rx.clone())),
    );
    cp_result.context("control plane")?;
    dp_result.context("data plane")?;
    Ok(())
}

fn print_welcome(api: SocketAddr, proxy: SocketAddr, admin: SocketAddr) {
    let host = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            format!("127.0.0.1:{}", a.port())
        } else {
            a.to_string()
        }
    };
    let (api, proxy, admin) = (host(api), host(proxy), host(admin));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nSwitchyard is running (control plane + one data plane).\n\
         \n  Try the proxy:\n\
         \x20   curl -i http://{proxy}/hello                       # inline content replaced by the proxy\n\
         \x20   curl -i http://{proxy}/api/users/42                # mocked API endpoint\n\
         \x20   curl -i http://{proxy}/api/anything                # forwarded to the demo backends\n\
         \x20   curl -i -H 'Host: maintenance.localhost' http://{proxy}/   # maintenance page from a file\n\
         \n  Manage it:\n\
         \x20   curl -s http://{api}/api/config                    # current config (ETag = version)\n\
         \x20   curl -s http://{api}/api/nodes                     # data planes and their acked versions\n\
         \x20   curl -s http://{api}/api/health\n\
         \x20   curl -s http://{admin}/readyz                      # data plane readiness\n\
         \n  Browser: http://{api}/api/status\n\
         \n  Edit deploy/switchyard.yaml to change the config. Ctrl-C stops.\n"
    );
    let _ = out.flush();
}
