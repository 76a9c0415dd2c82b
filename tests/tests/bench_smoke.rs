//! The benchmark harnesses run once, tiny, so they cannot rot. The numbers
//! are not judged here (that is BENCHMARKS.md's job), only that the
//! harnesses run and print their tables.

use std::process::Command;

#[test]
fn convergence_benchmark_runs_in_smoke_mode() {
    let bin = switchyard_tests::process::bin_path("converge-bench");
    let out = Command::new(bin)
        .arg("--smoke")
        .output()
        .expect("run converge-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "converge-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| 2 | 10 |"))
        .unwrap_or_else(|| panic!("no result row in:\n{stdout}"));
    let p99: f64 = row
        .split('|')
        .nth(5)
        .and_then(|c| c.trim().parse().ok())
        .expect("p99 cell");
    assert!(p99.is_finite() && p99 >= 0.0, "{row}");
}

#[test]
fn observability_benchmark_runs_in_smoke_mode() {
    let bin = switchyard_tests::process::bin_path("obs-bench");
    let out = Command::new(bin)
        .arg("--smoke")
        .output()
        .expect("run obs-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "obs-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every part printed its figures: throughput on/off, the subscribers'
    // status latency and the history store's memory.
    for needle in [
        "| replace (inline) | mean |",
        "| forward | mean |",
        "| GET /api/status p99 (ms) |",
        "| computed bound",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    let rps: f64 = stdout
        .lines()
        .find(|l| l.starts_with("| replace (inline) | mean |"))
        .and_then(|l| l.split('|').nth(3))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(rps > 0.0, "the proxy answered under load:\n{stdout}");
    assert!(stdout.trim_end().ends_with("done"), "{stdout}");
}
