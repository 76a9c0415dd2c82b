#!/usr/bin/env bash
# The test command: installs what the suite needs, then runs everything.
# Works on a fresh Debian machine with only the Rust toolchain (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n==> %s\n' "$*"; }

# System packages that tests drive for real: promtool (prometheus) checks the
# Prometheus pages, nginx/wrk/h2load run the benchmark harness's smoke mode.
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian prometheus package starts a server we do not want.
systemctl stop prometheus >/dev/null 2>&1 || true

# Python tools in a venv of our own, reused across runs.
venv="$root/target/py-venv"
if ! "$venv/bin/python" -c 'import schemathesis, grpc_tools, websockets' 2>/dev/null; then
  log "installing Python test tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
fi
export SWITCHYARD_PYTHON="$venv/bin/python"
export PATH="$venv/bin:$PATH"

# One-shot builds gain nothing from incremental caches, which would roughly
# double the target directory on a disk-limited CI machine.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings

log "cargo test --workspace"
cargo test --workspace --no-fail-fast 2>&1 | tee "$root/target/test-output.log"

log "benchmark harness, smoke mode (keeps bench/run.sh from rotting; numbers not judged)"
bench/run.sh --smoke --debug --out "$root/target/bench/smoke.md"

log "PGO training load against the debug binaries (keeps bench/pgo.sh from rotting)"
bench/pgo.sh --check
