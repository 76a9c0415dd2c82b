#!/usr/bin/env bash
# Builds the data plane as shipped: the `dist` profile (fat LTO, one
# codegen unit) plus profile-guided optimisation. An instrumented build
# serves a fixed training load (every kind of traffic the proxy handles, not
# only what the benchmark measures), and the final build lays its code out by
# what ran: hot paths packed together, cold ones (errors, rare protocols)
# moved aside, which matters on a path where instruction-cache misses cost
# as much as the instructions.
#
#   bench/pgo.sh              # -> target/pgo/use/dist/switchyard-data-plane
#   bench/pgo.sh --check      # only the training load, 1 s each, against the
#                             # debug binaries (the test suite's smoke check)
#
# Needs the toolchain's llvm-profdata (`rustup component add llvm-tools`,
# installed here when missing), wrk and h2load (installed like bench/run.sh
# does), and the release backend and control plane (built here).
set -euo pipefail

CHECK=0
case ${1:-} in
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: bench/pgo.sh [--check]" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_DIR="$ROOT/bench/lib"
# shellcheck source=lib/common.sh
source "$LIB_DIR/common.sh"
# shellcheck source=lib/configs.sh
source "$LIB_DIR/configs.sh"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PGO_DIR="$TARGET/pgo"
TRAIN_SECS=${PGO_TRAIN_SECS:-2}
[ "$CHECK" = 0 ] || TRAIN_SECS=1
export PATH="$PATH:/usr/sbin"

# --- tools -------------------------------------------------------------------
ensure_tools
profdata() {
  local host sysroot
  host=$(rustc -vV | awk '/^host:/ { print $2 }')
  sysroot=$(rustc --print sysroot)
  echo "$sysroot/lib/rustlib/$host/bin/llvm-profdata"
}

# --- the instrumented build --------------------------------------------------
if [ "$CHECK" = 1 ]; then
  BIN="$TARGET/debug" DP="$TARGET/debug/switchyard-data-plane"
  for b in switchyard-bench-backend switchyard-control-plane switchyard-data-plane; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b: cargo build first"
  done
else
  if [ ! -x "$(profdata)" ]; then
    log "rustup component add llvm-tools (llvm-profdata must match rustc's LLVM)"
    rustup component add llvm-tools >&2 ||
      die "could not install llvm-tools: PGO needs rustc's own llvm-profdata (bench/run.sh --no-pgo measures the plain dist build)"
  fi
  PROFDATA=$(profdata)
  [ -x "$PROFDATA" ] || die "no llvm-profdata at $PROFDATA after installing llvm-tools"
  # Separate target directories: RUSTFLAGS differ, and sharing target/
  # would make every plain build recompile everything after this one.
  mkdir -p "$PGO_DIR"
  log "cargo build --release -p switchyard-bench-backend -p switchyard-control-plane"
  (cd "$ROOT" && cargo build -q --release -p switchyard-bench-backend -p switchyard-control-plane)
  log "instrumented data plane (target/pgo/gen)"
  # (Build scripts and proc macros are instrumented too and write profiles
  # while building: the data plane's own go to their own directory below.)
  (cd "$ROOT" && CARGO_TARGET_DIR="$PGO_DIR/gen" RUSTFLAGS="-Cprofile-generate=$PGO_DIR/build-profiles" \
    cargo build -q --profile dist -p switchyard-data-plane)
  rm -rf "$PGO_DIR/build-profiles" "$PGO_DIR/train"
  mkdir -p "$PGO_DIR/train"
  BIN="$TARGET/release" DP="$PGO_DIR/gen/dist/switchyard-data-plane"
fi

# --- the training load -------------------------------------------------------
BASE=${BENCH_PORT_BASE:-28600}
P_BACKEND=$((BASE + 1)) P_PROXY=$((BASE + 2)) P_ADMIN=$((BASE + 3)) P_API=$((BASE + 4)) P_GRPC=$((BASE + 5))
require_ports_free "$P_BACKEND" "$P_PROXY" "$P_ADMIN" "$P_API" "$P_GRPC"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-pgo.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/switchyard-bench-backend" --dump-dir "$WORK/content"
start_bg backend 1 "$BIN/switchyard-bench-backend" --listen "127.0.0.1:$P_BACKEND"
gen_switchyard_config 10 "$P_BACKEND" 1 >"$WORK/switchyard.yaml"
start_bg cp 1 "$BIN/switchyard-control-plane" --config "$WORK/switchyard.yaml" \
  --data-dir "$WORK/cp" --content-root "$WORK/content" \
  --api-listen "127.0.0.1:$P_API" --grpc-listen "127.0.0.1:$P_GRPC"
start_bg dp 0 env LLVM_PROFILE_FILE="$PGO_DIR/train/dp-%p.profraw" \
  "$DP" --control-plane "http://127.0.0.1:$P_GRPC" \
  --node-id pgo --listen "127.0.0.1:$P_PROXY" --admin-listen "127.0.0.1:$P_ADMIN" \
  --cache-dir "$WORK/dp" --worker-threads 1
DP_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_ADMIN/readyz" 200 120 "$DP_PID" || die "data plane not ready: $(tail -5 "$WORK/dp.err")"

url="http://127.0.0.1:$P_PROXY"
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
# Each path answers as the training assumes (a rule renamed in the
# benchmark's config would otherwise train the 404 path).
for check in /bytes/1k:200 /bytes/256k:200 /replace/1k:200 /replace/page.html:200 \
  /rewrite/page.html:200 /no-such-rule:404; do
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url${check%%:*}" || true)
  [ "$code" = "${check##*:}" ] || die "$url${check%%:*} answered $code, expected ${check##*:}"
done
train() {
  log "training: $*"
  nice -n "$BENCH_NICE" taskset -c 1 "$@" >"$WORK/train.out" 2>&1 || die "training load failed: $* -> $(tail -3 "$WORK/train.out")"
}
wrk_for() { train wrk -t1 -d"${TRAIN_SECS}s" --timeout 5s "$@"; }
# Keep-alive GETs of every size, many and few connections.
wrk_for -c16 "$url/bytes/1k"
wrk_for -c256 "$url/bytes/1k"
wrk_for -c16 "$url/bytes/16k"
wrk_for -c16 "$url/bytes/256k"
# A new connection per request; request bodies (hyper's path).
wrk_for -c16 -H 'Connection: close' "$url/bytes/1k"
wrk_for -c16 -s "$WORK/post.lua" "$url/bytes/1k"
# Replacement content, find/replace, a path no rule matches.
wrk_for -c16 "$url/replace/1k"
wrk_for -c16 "$url/replace/page.html"
wrk_for -c16 "$url/rewrite/page.html"
wrk_for -c4 "$url/no-such-rule"
# HTTP/2 clients, and HTTP/1.1 at a fixed rate.
train h2load -t1 -c16 -m10 -D "$TRAIN_SECS" "$url/bytes/1k"
train h2load --h1 -t1 -c16 --rps=200 -D "$TRAIN_SECS" "$url/bytes/1k"
# The admin side, scraped as in production.
for _ in $(seq 1 20); do
  curl -s -o /dev/null "http://127.0.0.1:$P_ADMIN/metrics"
done

# The profile is written when the process exits normally.
kill -INT "$DP_PID"
for _ in $(seq 1 100); do
  kill -0 "$DP_PID" 2>/dev/null || break
  sleep 0.1
done
! kill -0 "$DP_PID" 2>/dev/null || die "the data plane did not stop on SIGINT"
if [ "$CHECK" = 1 ]; then
  log "training load ok"
  exit 0
fi
compgen -G "$PGO_DIR/train/*.profraw" >/dev/null || die "the instrumented data plane wrote no profile"
"$PROFDATA" merge -o "$PGO_DIR/merged.profdata" "$PGO_DIR/train"
stop_all

# --- the optimised build -----------------------------------------------------
log "optimised data plane (target/pgo/use)"
(cd "$ROOT" && CARGO_TARGET_DIR="$PGO_DIR/use" RUSTFLAGS="-Cprofile-use=$PGO_DIR/merged.profdata" \
  cargo build -q --profile dist -p switchyard-data-plane)
log "built $PGO_DIR/use/dist/switchyard-data-plane"
