//! Convergence benchmark (issue 4): the time from a REST write returning to
//! every data plane having acked the new version, for several fleet sizes
//! and rule counts. Real processes on loopback; prints p50/p99 per case.
//!
//!     cargo run --release -p switchyard-tests --bin converge-bench
//!     cargo run --release -p switchyard-tests --bin converge-bench -- --nodes 10 --rules 1000 --writes 100
//!
//! `--smoke` runs one tiny case so the suite keeps the harness working.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_tests::{client, eventually, ControlPlane, DataPlane};

struct Args {
    nodes: Vec<usize>,
    rules: Vec<usize>,
    writes: usize,
    /// Keep each case's process logs here instead of a temporary folder.
    log_dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        nodes: vec![1, 5, 10],
        rules: vec![10, 1_000, 10_000],
        writes: 50,
        log_dir: None,
    };
    let list = |v: Option<String>| -> Vec<usize> {
        v.unwrap_or_default()
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => args.nodes = list(it.next()),
            "--rules" => args.rules = list(it.next()),
            "--writes" => args.writes = it.next().and_then(|v| v.parse().ok()).unwrap_or(50),
            "--log-dir" => args.log_dir = it.next().map(Into::into),
            "--smoke" => {
                args.nodes = vec![2];
                args.rules = vec![10];
                args.writes = 3;
            }
            other => {
                eprintln!("unknown argument {other}; use --nodes 1,5 --rules 10,1000 --writes N --log-dir DIR | --smoke");
                std::process::exit(2);
            }
        }
    }
    args
}

fn config_yaml(rules: usize) -> String {
    let mut y = String::from("content_sources:\n  - name: body\n    inline: \"ok\\n\"\nrules:\n");
    for i in 0..rules {
        y.push_str(&format!(
            "  - name: r{i}\n    match: {{ hosts: [h{}.example.com], path_prefix: /r{i}/ }}\n    action: {{ replace: {{ source: body }} }}\n",
            i % 50
        ));
    }
    y
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn all_acked(http: &reqwest::Client, cp: &ControlPlane, n: usize, version: u64) -> bool {
    let Ok(r) = http.get(cp.api("/api/nodes")).send().await else {
        return false;
    };
    let Ok(v) = r.json::<Value>().await else {
        return false;
    };
    let list = v["nodes"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter(|x| x["connected"] == true && x["acked_version"].as_u64() >= Some(version))
        .count()
        >= n
}

async fn run_case(
    nodes: usize,
    rules: usize,
    writes: usize,
    log_dir: Option<&std::path::Path>,
) -> Vec<f64> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = match log_dir {
        Some(d) => {
            let d = d.join(format!("{nodes}x{rules}"));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("create log dir");
            d
        }
        None => tmp.path().to_owned(),
    };
    let dir = &dir;
    let config = dir.as_path().join("switchyard.yaml");
    std::fs::write(&config, config_yaml(rules)).expect("write config");
    let cp = ControlPlane::start(dir.as_path(), &config);
    let dps: Vec<DataPlane> = (0..nodes)
        .map(|i| DataPlane::start(dir.as_path(), &format!("dp{i}"), &cp.grpc_url()))
        .collect();
    let http = client();
    eventually("initial convergence", Duration::from_secs(120), || {
        let (http, cp) = (&http, &cp);
        async move { all_acked(http, cp, nodes, 1).await.then_some(()) }
    })
    .await;

    let mut lat = Vec::with_capacity(writes);
    for w in 0..writes {
        let rule = json!({
            "name": format!("bench-{w}"),
            "match": { "path_exact": format!("/bench/{w}") },
            "action": { "replace": { "source": "body" } }
        });
        let r = http
            .post(cp.api("/api/rules"))
            .json(&rule)
            .send()
            .await
            .expect("POST /api/rules");
        assert!(r.status().is_success(), "write failed: {}", r.status());
        let version: u64 = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok())
            .expect("write answers with the new version as ETag");
        let t0 = Instant::now();
        loop {
            if all_acked(&http, &cp, nodes, version).await {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no convergence on version {version}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop(dps);
    lat.sort_by(f64::total_cmp);
    lat
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    println!("| data planes | rules | writes | p50 ms | p99 ms | max ms |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &rules in &args.rules {
        for &nodes in &args.nodes {
            // Big configs make each write heavier; fewer writes keep the run bounded.
            let writes = if rules >= 10_000 {
                args.writes.min(20)
            } else {
                args.writes
            };
            let lat = run_case(nodes, rules, writes, args.log_dir.as_deref()).await;
            println!(
                "| {nodes} | {rules} | {writes} | {:.1} | {:.1} | {:.1} |",
                percentile(&lat, 50.0),
                percentile(&lat, 99.0),
                lat.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
}
