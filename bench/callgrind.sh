#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: repeatable
# whatever else the machine runs, so small differences (metrics on/off, a
# hot-path change) can be compared where wall-clock rounds are too noisy.
#
#   bench/callgrind.sh                          # /bytes/1k, 8 s measured
#   bench/callgrind.sh --path /replace/1k
#   bench/callgrind.sh -- --no-request-metrics  # extra data-plane flags
#   bench/callgrind.sh --nginx                  # nginx (one worker process) instead
#   bench/callgrind.sh --close                  # a new connection per request
#   bench/callgrind.sh --rules 10000            # the routing-scale config
#   bench/callgrind.sh --pgo                    # the data plane bench/pgo.sh built
#   bench/callgrind.sh --cache                  # also simulate the caches: misses per request
#
# Uses the release binaries in target/release and the data plane in
# target/dist, or in target/pgo/use/dist with --pgo (build them first:
# cargo build --release -p switchyard-control-plane -p switchyard-bench-backend
# && cargo build --profile dist -p switchyard-data-plane, or bench/pgo.sh).
# Prints one line: requests, instructions and instructions per request
# (with --cache, also L1 instruction and data misses per request); --keep
# leaves callgrind's profile for callgrind_annotate.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/common.sh
source "$ROOT/bench/lib/common.sh"
# shellcheck source=lib/configs.sh
source "$ROOT/bench/lib/configs.sh"

URL_PATH=/bytes/1k SECS=8 WARMUP=4 CONNS=8 KEEP=0 NGINX=0 CLOSE=() RULES=10 PGO=0 CACHE=no
while [ $# -gt 0 ]; do
  case $1 in
    --path) URL_PATH=${2:?}; shift ;;
    --secs) SECS=${2:?}; shift ;;
    --connections) CONNS=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    --nginx) NGINX=1 ;;
    --close) CLOSE=(-H "Connection: close") ;;
    --rules) RULES=${2:?}; shift ;;
    --pgo) PGO=1 ;;
    --cache) CACHE=yes ;;
    --) shift; break ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift
done
DP_EXTRA=("$@")

export PATH="$PATH:/usr/sbin"
[ "$NGINX" = 0 ] || command -v nginx >/dev/null || die "nginx is needed (apt-get install nginx)"
for tool in valgrind callgrind_control callgrind_annotate wrk curl taskset; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install valgrind wrk curl util-linux)"
done
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
DP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/dist"
[ "$PGO" = 0 ] || DP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/pgo/use/dist"
for b in switchyard-bench-backend switchyard-control-plane; do
  [ -x "$BIN/$b" ] || die "missing $BIN/$b: build the release binaries first"
done
[ "$NGINX" = 1 ] || [ -x "$DP_BIN/switchyard-data-plane" ] ||
  die "missing $DP_BIN/switchyard-data-plane: cargo build --profile dist -p switchyard-data-plane (bench/pgo.sh for --pgo)"

BASE=${BENCH_PORT_BASE:-28400}
P_BACKEND=$((BASE + 1)) P_PROXY=$((BASE + 2)) P_ADMIN=$((BASE + 3)) P_API=$((BASE + 4)) P_GRPC=$((BASE + 5))
require_ports_free "$P_BACKEND" "$P_PROXY" "$P_ADMIN" "$P_API" "$P_GRPC"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-callgrind.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/switchyard-bench-backend" --dump-dir "$WORK/content"
start_bg backend 1 "$BIN/switchyard-bench-backend" --listen "127.0.0.1:$P_BACKEND"
if [ "$NGINX" = 1 ]; then
  # The same nginx config as bench/run.sh, one process (no master) so
  # callgrind sees the worker.
  mkdir -p "$WORK/nginx"
  gen_nginx_config "$RULES" "$WORK/nginx" "$P_BACKEND" "$P_PROXY" "$P_ADMIN" "$WORK/content" >"$WORK/nginx/nginx.conf"
  start_bg nginx 0 valgrind --tool=callgrind --dump-instr=no --cache-sim="$CACHE" --callgrind-out-file="$WORK/callgrind.out" \
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off; master_process off;'
  DP_PID=$LAST_PID
  wait_http "http://127.0.0.1:$P_PROXY$URL_PATH" 200 120 "$DP_PID" || die "nginx not ready: $(tail -5 "$WORK/nginx.err")"
else
  gen_switchyard_config "$RULES" "$P_BACKEND" 1 >"$WORK/switchyard.yaml"
  start_bg cp 1 "$BIN/switchyard-control-plane" --config "$WORK/switchyard.yaml" \
    --data-dir "$WORK/cp" --content-root "$WORK/content" \
    --api-listen "127.0.0.1:$P_API" --grpc-listen "127.0.0.1:$P_GRPC"
  start_bg dp 0 valgrind --tool=callgrind --dump-instr=no --cache-sim="$CACHE" --callgrind-out-file="$WORK/callgrind.out" \
    "$DP_BIN/switchyard-data-plane" --control-plane "http://127.0.0.1:$P_GRPC" --node-id callgrind \
    --listen "127.0.0.1:$P_PROXY" --admin-listen "127.0.0.1:$P_ADMIN" --cache-dir "$WORK/dp" \
    --worker-threads 1 ${DP_EXTRA[@]+"${DP_EXTRA[@]}"}
  DP_PID=$LAST_PID
  wait_http "http://127.0.0.1:$P_ADMIN/readyz" 200 120 "$DP_PID" || die "data plane not ready: $(tail -5 "$WORK/dp.err")"
fi

url="http://127.0.0.1:$P_PROXY$URL_PATH"
taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" ${CLOSE[@]+"${CLOSE[@]}"} "$url" >/dev/null
callgrind_control -z "$DP_PID" >/dev/null 2>&1
requests=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" ${CLOSE[@]+"${CLOSE[@]}"} "$url" | awk '/requests in/ {print $1}')
callgrind_control -d "$DP_PID" >/dev/null 2>&1
profile=$(ls "$WORK"/callgrind.out.* 2>/dev/null | head -1)
[ -n "$profile" ] || die "callgrind wrote no profile"
instructions=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[ "${requests:-0}" -gt 0 ] || die "wrk completed no request"
who="data-plane flags [${DP_EXTRA[*]:-}]"
[ "$NGINX" = 0 ] || who=nginx
[ "$NGINX" = 1 ] || [ "$PGO" = 0 ] || who="$who, PGO build"
printf 'path %s, %s rules, %s: %s requests, %s instructions, %s per request\n' \
  "$URL_PATH" "$RULES" "$who" "$requests" "$instructions" "$((instructions / requests))"
if [ "$CACHE" = yes ]; then
  # Simulated first-level caches (32 KiB each): instruction misses, data
  # read and write misses.
  callgrind_annotate "$profile" 2>/dev/null | awk -v r="$requests" '
    /^Events shown:/ { for (i = 3; i <= NF; i++) col[$i] = 2 * (i - 2) - 1 }  # each total is followed by its "(100.0%)"
    /PROGRAM TOTALS/ {
      for (i = 1; i <= NF; i++) gsub(",", "", $i)
      printf "per request: I1 misses %d, D1 read misses %d, D1 write misses %d\n", $col["I1mr"] / r, $col["D1mr"] / r, $col["D1mw"] / r
    }'
fi
