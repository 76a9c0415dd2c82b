//! Observability overhead benchmark (issue 7 item 9), three parts:
//!
//! 1. metrics cost: proxy throughput of a data plane with request metrics
//!    on vs one started with `--no-request-metrics`, both pinned to the
//!    same core with `taskset`, measured A/B/A/B with `wrk` (a Rust load
//!    loop when wrk is missing);
//! 2. 1,000 WebSocket subscribers on `/ws/events` while `metrics_update`
//!    events stream: control-plane RSS before/after and `GET /api/status`
//!    latency (p50/p99) from a load loop during the stream;
//! 3. the time-series store for 100 rules x 10 nodes: RSS measured around
//!    filling the history to its full length, next to the computed bound.
//!
//! ```sh
//! cargo run --release -p switchyard-tests --bin obs-bench
//! cargo run --release -p switchyard-tests --bin obs-bench -- --secs 5 --subscribers 1000
//! ```
//!
//! `--smoke` runs every part tiny so the suite keeps the harness working.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use switchyard_control_plane::alerts::{AlertSettings, Engine};
use switchyard_control_plane::metrics::aggregate::Aggregator;
use switchyard_control_plane::metrics::history::{History, Series};
use switchyard_shared::proto;
use switchyard_tests::process::{bin_path, Proc};
use switchyard_tests::{client, eventually, Backend, BackendMode, ControlPlane, DataPlane};

struct Args {
    smoke: bool,
    /// Seconds per throughput round.
    secs: f64,
    rounds: usize,
    subscribers: usize,
    stream_secs: f64,
    rules: usize,
    nodes: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        smoke: false,
        secs: 4.0,
        rounds: 3,
        subscribers: 1000,
        stream_secs: 10.0,
        rules: 100,
        nodes: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<f64>().ok());
        match arg.as_str() {
            "--secs" => a.secs = num().unwrap_or(a.secs),
            "--rounds" => a.rounds = num().map_or(a.rounds, |v| v as usize),
            "--subscribers" => a.subscribers = num().map_or(a.subscribers, |v| v as usize),
            "--stream-secs" => a.stream_secs = num().unwrap_or(a.stream_secs),
            "--smoke" => {
                a.smoke = true;
                a.secs = 0.5;
                a.rounds = 1;
                a.subscribers = 20;
                a.stream_secs = 1.0;
                a.rules = 10;
                a.nodes = 2;
            }
            other => {
                eprintln!("unknown argument {other}; use --secs S --rounds N --subscribers N --stream-secs S | --smoke");
                std::process::exit(2);
            }
        }
    }
    a
}

fn config_yaml(backend: &str) -> String {
    format!(
        r#"
backends:
  - name: pool
    servers: [{{ address: "{backend}" }}]
content_sources:
  - name: body
    inline: "ok\n"
rules:
  - name: inline
    match: {{ path_exact: /inline }}
    action: {{ replace: {{ source: body }} }}
  - name: api
    match: {{ path_prefix: /v1/ }}
    action: {{ forward: {{ backend: pool }} }}
"#
    )
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty() || !o.stdout.is_empty())
}

/// A data plane pinned to core `cpu` (when taskset exists), with extra flags.
fn pinned_data_plane(
    dir: &Path,
    node_id: &str,
    grpc: &str,
    cpu: &str,
    extra: &[&str],
) -> DataPlane {
    let mut args: Vec<String> = [
        "--control-plane",
        grpc,
        "--node-id",
        node_id,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--worker-threads",
        "1",
        "--cache-dir",
    ]
    .map(String::from)
    .to_vec();
    args.push(dir.join(format!("dp-{node_id}")).display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let dp_bin = bin_path("e2e-data-plane");
    let proc = if have("taskset") {
        let mut full = vec!["-c".to_owned(), cpu.to_owned(), dp_bin];
        full.extend(args);
        Proc::start("taskset", &full, &["proxy", "admin"], dir, node_id)
    } else {
        Proc::start(&dp_bin, &args, &["proxy", "admin"], dir, node_id)
    };
    DataPlane {
        proc,
        node_id: node_id.to_owned(),
    }
}

/// Requests per second against `url` for `secs`: wrk pinned to core 0, or
/// a Rust loop of 16 concurrent keep-alive clients.
async fn throughput(url: &str, secs: f64) -> f64 {
    if have("wrk") {
        let dur = format!("{}s", secs.ceil().max(1.0) as u64);
        let mut cmd = if have("taskset") {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", "wrk"]);
            c
        } else {
            Command::new("wrk")
        };
        let out = cmd.args(["-t1", "-c16", "-d", &dur, url]).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            let rps = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok());
            if let Some(rps) = rps {
                return rps;
            }
            eprintln!("wrk output not understood:\n{text}");
        }
    }
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (done, url, http) = (done.clone(), url.to_owned(), client());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if let Ok(r) = http.get(&url).send().await {
                    if r.bytes().await.is_ok() {
                        done.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Relaxed) as f64 / secs
}

async fn wait_ready(dp: &DataPlane) {
    dp.wait_ready(Duration::from_secs(30)).await;
}

/// Part 1: request metrics on vs off.
async fn metrics_cost(a: &Args, dir: &Path) {
    let backend = Backend::start("b", BackendMode::Echo).await;
    let config = dir.join("switchyard.yaml");
    std::fs::write(&config, config_yaml(&backend.addr.to_string())).expect("write config");
    let cp = ControlPlane::start(dir, &config);
    let on = pinned_data_plane(dir, "metrics-on", &cp.grpc_url(), "1", &[]);
    let off = pinned_data_plane(
        dir,
        "metrics-off",
        &cp.grpc_url(),
        "1",
        &["--no-request-metrics"],
    );
    wait_ready(&on).await;
    wait_ready(&off).await;
    let tool = if have("wrk") {
        "wrk -t1 -c16"
    } else {
        "Rust loop, 16 clients"
    };
    println!("### Request metrics on vs off ({tool}, data planes pinned to one core, {}s rounds A/B/A/B)\n", a.secs);
    println!("| target | round | metrics on (req/s) | metrics off (req/s) |");
    println!("| --- | --- | --- | --- |");
    for (label, path) in [("replace (inline)", "/inline"), ("forward", "/v1/x")] {
        // Warm both up (connections, pools).
        throughput(&on.proxy(path), 0.3).await;
        throughput(&off.proxy(path), 0.3).await;
        let (mut sum_on, mut sum_off) = (0.0, 0.0);
        for round in 1..=a.rounds {
            let r_on = throughput(&on.proxy(path), a.secs).await;
            let r_off = throughput(&off.proxy(path), a.secs).await;
            sum_on += r_on;
            sum_off += r_off;
            println!("| {label} | {round} | {r_on:.0} | {r_off:.0} |");
        }
        let cost = (sum_off - sum_on) / sum_off * 100.0;
        println!(
            "| {label} | mean | {:.0} | {:.0} |",
            sum_on / a.rounds as f64,
            sum_off / a.rounds as f64
        );
        println!("| {label} | **cost of metrics** | **{cost:.1}%** | |");
    }
    println!();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Part 2: many WebSocket subscribers while `/api/status` is polled.
async fn subscribers(a: &Args, dir: &Path) {
    let config = dir.join("ws.yaml");
    std::fs::write(&config, config_yaml("127.0.0.1:9")).expect("write config");
    let data_dir = dir.join("ws-cp-data");
    let mut args = ControlPlane::args(&config, &data_dir, "127.0.0.1:0", "127.0.0.1:0");
    args.extend(["--metrics-interval", "250ms"].map(String::from));
    let proc = Proc::start(
        &bin_path("e2e-control-plane"),
        &args,
        &["api", "grpc"],
        dir,
        "ws-control-plane",
    );
    let cp = ControlPlane {
        proc,
        config_path: config,
        data_dir,
    };
    let pid = cp.proc.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_of(pid).unwrap_or(0);

    let received = Arc::new(AtomicU64::new(0));
    let url = cp.api("/ws/events").replacen("http", "ws", 1);
    let mut clients = Vec::with_capacity(a.subscribers);
    let connected = Arc::new(AtomicU64::new(0));
    for _ in 0..a.subscribers {
        let (url, received, connected) = (url.clone(), received.clone(), connected.clone());
        clients.push(tokio::spawn(async move {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                return;
            };
            connected.fetch_add(1, Relaxed);
            while let Some(Ok(_)) = ws.next().await {
                received.fetch_add(1, Relaxed);
            }
        }));
    }
    let http = client();
    let want = a.subscribers as u64;
    let cp_ref = &cp;
    eventually(
        "every subscriber connected",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let connected = connected.clone();
            async move {
                let page = http
                    .get(cp_ref.api("/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let n: u64 = page
                    .lines()
                    .find_map(|l| l.strip_prefix("switchyard_websocket_clients "))?
                    .trim()
                    .parse()
                    .ok()?;
                (n >= want && connected.load(Relaxed) >= want).then_some(())
            }
        },
    )
    .await;
    let rss_connected = rss_of(pid).unwrap_or(0);
    let received_at_start = received.load(Relaxed);

    // Poll /api/status one request at a time while events stream.
    let mut lat = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(a.stream_secs);
    while Instant::now() < until {
        let t = Instant::now();
        let ok = match http.get(cp.api("/api/status")).send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let rss_after = rss_of(pid).unwrap_or(0);
    let delivered = received.load(Relaxed) - received_at_start;
    lat.sort_by(f64::total_cmp);
    println!(
        "### {} WebSocket subscribers on /ws/events (metrics_update every 250 ms, {}s of streaming)\n",
        a.subscribers, a.stream_secs
    );
    println!("| figure | value |\n| --- | --- |");
    println!("| control-plane RSS before (MiB) | {} |", mib(rss_before));
    println!(
        "| RSS with all subscribers connected (MiB) | {} |",
        mib(rss_connected)
    );
    println!("| RSS after streaming (MiB) | {} |", mib(rss_after));
    println!(
        "| RSS per subscriber (KiB) | {:.1} |",
        rss_after.saturating_sub(rss_before) as f64 / 1024.0 / a.subscribers.max(1) as f64
    );
    println!(
        "| events delivered during the stream | {delivered} ({:.0}/s) |",
        delivered as f64 / a.stream_secs
    );
    println!("| GET /api/status requests | {} |", lat.len());
    println!(
        "| GET /api/status p50 (ms) | {:.2} |",
        percentile(&lat, 50.0)
    );
    println!(
        "| GET /api/status p99 (ms) | {:.2} |",
        percentile(&lat, 99.0)
    );
    println!(
        "| GET /api/status max (ms) | {:.2} |\n",
        lat.last().copied().unwrap_or(f64::NAN)
    );
    for c in clients {
        c.abort();
    }
}

/// A node's cumulative report with `rules` rules.
fn report(rules: usize, uptime_ms: u64, step: u64) -> proto::MetricsReport {
    let h = switchyard_data_plane::metrics::histogram::Histogram::default();
    for i in 0..50u64 {
        h.record(Duration::from_micros(200 + i * 997 % 50_000));
    }
    let latency = h.snapshot().to_proto();
    proto::MetricsReport {
        uptime_ms,
        rules: (0..rules)
            .map(|r| proto::RuleStats {
                rule: format!("rule-{r}"),
                requests: 100 * step,
                errors: step,
                latency: Some(latency.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Part 3: the history store's memory, measured.
fn history_memory(a: &Args) {
    let agg = Aggregator::default();
    let nodes: Vec<String> = (0..a.nodes).map(|n| format!("node-{n}")).collect();
    let connected: HashMap<String, bool> = nodes.iter().map(|n| (n.clone(), true)).collect();
    for n in &nodes {
        agg.ingest(n, &report(a.rules, 1_000, 1), 0);
    }
    // Warm the allocator with one snapshot before measuring.
    drop(agg.snapshot(&connected, 0));
    let before = rss_of(std::process::id()).unwrap_or(0);
    let mut history = History::default();
    // One tick per minute fills the fine (720) and the coarse (1,440)
    // series in 1,440 ticks; smoke mode stops early.
    let ticks: u64 = if a.smoke { 30 } else { 1_440 };
    for t in 1..=ticks {
        let fleet = agg.snapshot(&connected, t * 60_000);
        history.record(&fleet);
    }
    let after = rss_of(std::process::id()).unwrap_or(0);
    let series = 1 + history.rules.len();
    let bound = series * Series::MEMORY_BYTES;

    // The alert engine's readings: default window and tick.
    let mut engine = Engine::new(AlertSettings::default());
    let before_alerts = rss_of(std::process::id()).unwrap_or(0);
    for t in 1..=30u64 {
        let fleet = agg.snapshot(&connected, t * 5_000);
        engine.evaluate(&fleet);
    }
    let after_alerts = rss_of(std::process::id()).unwrap_or(0);
    println!(
        "### Time-series store, {} rules x {} nodes ({ticks} ticks)\n",
        a.rules, a.nodes
    );
    println!("| figure | value |\n| --- | --- |");
    println!("| series (fleet + rules) | {series} |");
    println!(
        "| computed bound ({} B per series) (MiB) | {} |",
        Series::MEMORY_BYTES,
        mib(bound as u64)
    );
    println!(
        "| measured RSS growth while filling (MiB) | {} |",
        mib(after.saturating_sub(before))
    );
    println!(
        "| alert engine readings, 1 min window at 5 s (MiB, RSS growth) | {} |\n",
        mib(after_alerts.saturating_sub(before_alerts))
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = parse_args();
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "## Observability overhead (obs-bench{})\n",
        if a.smoke { " --smoke" } else { "" }
    );
    history_memory(&a);
    metrics_cost(&a, dir.path()).await;
    subscribers(&a, dir.path()).await;
    println!("done");
}
