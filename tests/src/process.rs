//! Real processes: spawn a binary, learn its bound addresses from the
//! `listening <role> <addr>` lines it prints, kill it (gently or with -9).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process that is killed when dropped.
pub struct Proc {
    child: Child,
    pub addrs: HashMap<String, SocketAddr>,
    pub stderr_path: PathBuf,
    /// Every line printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `bin` and waits until it has printed an address for every role.
    pub fn start(bin: &str, args: &[String], roles: &[&str], log_dir: &Path, name: &str) -> Proc {
        Self::start_with_env(bin, args, &[], roles, log_dir, name)
    }

    /// Like `start`, with extra environment variables (`RUST_LOG` among
    /// them overrides the default).
    pub fn start_with_env(
        bin: &str,
        args: &[String],
        env: &[(&str, &str)],
        roles: &[&str],
        log_dir: &Path,
        name: &str,
    ) -> Proc {
        // Appending keeps the log of an earlier run of the same name.
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("create stderr log");
        let mut child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            // Keep draining so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while roles.iter().any(|r| !addrs.contains_key(*r)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let mut parts = line.split_whitespace();
                    if let (Some("listening"), Some(role), Some(addr)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        if let Ok(a) = addr.parse() {
                            addrs.insert(role.to_owned(), a);
                        }
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!("{name} did not report {roles:?} (exit: {status:?}); stderr:\n{log}");
                }
            }
        }
        Proc {
            child,
            addrs,
            stderr_path,
            stdout: lines,
        }
    }

    pub fn addr(&self, role: &str) -> SocketAddr {
        self.addrs[role]
    }

    pub fn url(&self, role: &str) -> String {
        format!("http://{}", self.addr(role))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "kill -{name} failed: {sent:?}"
        );
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls (without blocking the runtime) until the process exits;
    /// `None` if it is still running after `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything printed on stdout so far, one line each.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary to completion (for start-up failures), returning its exit
/// status and stderr.
pub fn run_to_exit(bin: &str, args: &[String]) -> (ExitStatus, String) {
    run_to_exit_with_env(bin, args, &[])
}

/// Like `run_to_exit`, with extra environment variables.
pub fn run_to_exit_with_env(
    bin: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> (ExitStatus, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Path of a binary of this crate. Integration tests run from
/// `target/<profile>/deps/` and this crate's own binaries (the benchmark)
/// from `target/<profile>/`; cargo builds the e2e binaries into
/// `target/<profile>/` for both.
pub fn bin_path(name: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect::<Vec<_>>();
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => p.display().to_string(),
        None => panic!(
            "{name} not built (looked at {candidates:?}): run the suite with `cargo test --workspace`"
        ),
    }
}

/// A control plane on ephemeral loopback ports with its own data dir.
pub struct ControlPlane {
    pub proc: Proc,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
}

impl ControlPlane {
    pub fn args(config: &Path, data_dir: &Path, api: &str, grpc: &str) -> Vec<String> {
        vec![
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--api-listen".into(),
            api.into(),
            "--grpc-listen".into(),
            grpc.into(),
        ]
    }

    /// Starts on port 0 for both API and gRPC.
    pub fn start(dir: &Path, config_path: &Path) -> ControlPlane {
        Self::start_on(dir, config_path, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts on given addresses (to restart on the same ports).
    pub fn start_on(dir: &Path, config_path: &Path, api: &str, grpc: &str) -> ControlPlane {
        Self::start_with(dir, config_path, api, grpc, &[], &[])
    }

    /// Starts on given addresses with extra flags and environment.
    pub fn start_with(
        dir: &Path,
        config_path: &Path,
        api: &str,
        grpc: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> ControlPlane {
        let listen = [api, grpc];
        Self::launch(
            dir,
            config_path,
            listen,
            extra_args,
            env,
            "control-plane",
            "cp-data",
        )
    }

    /// Starts on port 0 with extra flags and environment variables; `name`
    /// names its data dir and stderr log in `dir`, so several can share it.
    pub fn start_named(
        dir: &Path,
        config_path: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
        name: &str,
    ) -> ControlPlane {
        let listen = ["127.0.0.1:0", "127.0.0.1:0"];
        let data_dir = format!("{name}-data");
        Self::launch(dir, config_path, listen, extra_args, env, name, &data_dir)
    }

    fn launch(
        dir: &Path,
        config_path: &Path,
        [api, grpc]: [&str; 2],
        extra_args: &[&str],
        env: &[(&str, &str)],
        name: &str,
        data_dir_name: &str,
    ) -> ControlPlane {
        let data_dir = dir.join(data_dir_name);
        let mut args = Self::args(config_path, &data_dir, api, grpc);
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let proc = Proc::start_with_env(
            &bin_path("e2e-control-plane"),
            &args,
            env,
            &["api", "grpc"],
            dir,
            name,
        );
        ControlPlane {
            proc,
            config_path: config_path.to_owned(),
            data_dir,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url("api"))
    }

    pub fn grpc_url(&self) -> String {
        self.proc.url("grpc")
    }
}

/// A data plane process following a control plane.
pub struct DataPlane {
    pub proc: Proc,
    pub node_id: String,
}

impl DataPlane {
    pub fn start(dir: &Path, node_id: &str, control_plane_url: &str) -> DataPlane {
        Self::start_with(dir, node_id, control_plane_url, &[])
    }

    /// Starts with extra environment variables (fault switches, OTLP).
    /// The cache dir depends only on the node id, so a restarted node finds
    /// its cached snapshot.
    pub fn start_with(
        dir: &Path,
        node_id: &str,
        control_plane_url: &str,
        env: &[(&str, &str)],
    ) -> DataPlane {
        Self::start_with_args(dir, node_id, control_plane_url, &[], env)
    }

    /// Starts with extra flags (`--shutdown-grace 500ms`) and environment.
    pub fn start_with_args(
        dir: &Path,
        node_id: &str,
        control_plane_url: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> DataPlane {
        let cache_dir = dir.join(format!("dp-{node_id}"));
        let mut args = vec![
            "--control-plane".into(),
            control_plane_url.into(),
            "--node-id".into(),
            node_id.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--cache-dir".into(),
            cache_dir.display().to_string(),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let proc = Proc::start_with_env(
            &bin_path("e2e-data-plane"),
            &args,
            env,
            &["proxy", "admin"],
            dir,
            node_id,
        );
        DataPlane {
            proc,
            node_id: node_id.into(),
        }
    }

    pub fn proxy(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url("proxy"))
    }

    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url("admin"))
    }

    /// Waits until `/readyz` answers 2xx (a snapshot is applied).
    pub async fn wait_ready(&self, within: std::time::Duration) {
        let http = crate::client();
        crate::eventually(&format!("{} ready", self.node_id), within, || async {
            let r = http.get(self.admin("/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
}
