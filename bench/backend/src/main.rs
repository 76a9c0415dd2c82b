//! `switchyard-bench-backend`: the upstream the benchmark harness starts once
//! and shares between every contestant.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use switchyard_bench_backend::{serve, Bodies};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(about = "Fast fixed-body HTTP/1.1 + h2c backend for the Switchyard benchmarks")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write every body as a file into this folder, then exit (the
    /// replacement scenarios serve these files).
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bodies = Bodies::new();
    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for body in bodies.all() {
            let path = dir.join(body.name);
            std::fs::write(&path, &body.bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening backend {addr}")?;
            out.flush()?;
        }
        serve(listener, Arc::new(bodies), shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
