#!/usr/bin/env bash
# The test command: installs what the suite needs, then runs everything.
# Works on a fresh machine with only the Rust toolchain (root, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# System packages some tests drive for real. Install only what is missing.
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings

log "cargo test --workspace"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log
