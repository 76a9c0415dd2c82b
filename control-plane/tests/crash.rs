//! kill -9 during a burst of writes: the database must reopen at a
//! consistent version (config, history and audit agree), because every
//! change is one sled transaction.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_control_plane::store::{SledStore, Store};

const CONFIG: &str = r#"
backends:
  - name: web
    servers:
      - address: 127.0.0.1:8081
rules:
  - name: base
    match:
      path_prefix: /
    action:
      forward:
        backend: web
"#;

/// POSTs one rule; returns the status code (0 when the connection failed).
fn post_rule(api: &str, i: usize) -> u16 {
    let body = format!(
        r#"{{"name":"r{i}","match":{{"path_exact":"/r{i}"}},"action":{{"forward":{{"backend":"web"}}}}}}"#
    );
    let Ok(mut s) = TcpStream::connect(api) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "POST /api/rules?position=0 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn kill_9_during_a_write_burst_leaves_a_consistent_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let data = dir.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-control-plane"))
        .args(["--config", config.to_str().expect("utf8")])
        .args(["--data-dir", data.to_str().expect("utf8")])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--no-watch",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the control plane");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let api = loop {
        let line = lines.next().expect("a listening line").expect("read");
        if let Some(addr) = line.strip_prefix("listening api ") {
            break addr.to_owned();
        }
    };

    // Writers in parallel; kill -9 once some writes have been acknowledged,
    // while the others are still in flight.
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = api.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..500 {
                    match post_rule(&api, w * 1000 + i) {
                        201 => {
                            ok += 1;
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        0 => break,
                        _ => {}
                    }
                }
                ok
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < 20 {
        assert!(
            Instant::now() < deadline,
            "no write was acknowledged in time"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let accepted: usize = writers.into_iter().map(|w| w.join().unwrap_or(0)).sum();

    let store = SledStore::open(&data).expect("reopen after kill -9");
    let current = store.current().expect("read").expect("a config");
    let history = store.history().expect("history");
    let newest = history.first().expect("history entry");
    assert_eq!(
        newest.version, current.version,
        "history ends at the current version"
    );
    assert_eq!(newest.hash, current.hash);
    assert_eq!(newest.config, current.config);
    let audit = store.audit(None, 1).expect("audit");
    assert_eq!(
        audit[0].to_version, current.version,
        "audit ends at the current version"
    );
    // Version 1 is the file; every other version is one rule more.
    assert_eq!(current.config.rules.len() as u64, current.version);
    assert!(
        current.version as usize > accepted,
        "an acknowledged write was lost: {accepted} accepted, version {}",
        current.version
    );
}
