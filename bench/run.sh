#!/usr/bin/env bash
# Switchyard vs nginx, side by side on one machine: see bench/README.md.
#
#   bench/run.sh                  # every scenario, 2 rounds of 3 s per contestant
#   bench/run.sh --smoke          # every scenario once for ~1 s: proves the harness works
#   bench/run.sh get-1k-c16 h2c-1k --duration 5
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_DIR="$ROOT/bench/lib"
# shellcheck source=lib/common.sh
source "$LIB_DIR/common.sh"
# shellcheck source=lib/configs.sh
source "$LIB_DIR/configs.sh"
# shellcheck source=lib/load.sh
source "$LIB_DIR/load.sh"
# shellcheck source=lib/scenarios.sh
source "$LIB_DIR/scenarios.sh"

usage() {
  cat <<'EOF'
usage: bench/run.sh [options] [scenario...]

  --smoke              each scenario once for ~1 s, no warm-up (exit 1 on any failure)
  --duration SECONDS   length of one measured run (default 3)
  --rounds N           A,B rounds per scenario (default 2: nginx, switchyard, nginx, switchyard)
  --contestants LIST   comma list of backend,nginx,switchyard (default all three)
  --out FILE           also write the report (markdown) here (default target/bench/latest.md)
  --no-build           use the release binaries already built
  --keep               keep the work directory (configs, logs, raw results)
  --list               list the scenarios and exit

Scenarios (default: all):
EOF
  scenario_list | sed 's/^/  /'
}

ORIG_ARGS="$*"
SMOKE=0 DURATION="" ROUNDS="" BUILD=1 KEEP=0
CONTESTANTS="backend,nginx,switchyard"
OUT="$ROOT/target/bench/latest.md"
SELECTED=()
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --duration) DURATION=${2:?}; shift ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --contestants) CONTESTANTS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --list) scenario_list; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) SELECTED+=("$1") ;;
  esac
  shift
done
if [ "$SMOKE" = 1 ]; then
  DURATION=${DURATION:-1} ROUNDS=${ROUNDS:-1} WARMUP=0
else
  DURATION=${DURATION:-3} ROUNDS=${ROUNDS:-2} WARMUP=1
fi
[ ${#SELECTED[@]} -gt 0 ] || mapfile -t SELECTED < <(scenario_names)
for s in "${SELECTED[@]}"; do scenario_exists "$s" || die "unknown scenario $s (see --list)"; done
has_contestant() { [[ ",$CONTESTANTS," == *",$1,"* ]]; }

# Ports, all on loopback.
BASE=${BENCH_PORT_BASE:-28100}
P_BACKEND=$((BASE + 1)) P_NGINX=$((BASE + 2)) P_NGINX_H2=$((BASE + 3))
P_SY=$((BASE + 4)) P_SY_ADMIN=$((BASE + 5)) P_CP_API=$((BASE + 6)) P_CP_GRPC=$((BASE + 7))
PROXY_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || warn "fewer than 2 cores: proxy and client share a core, numbers mean little"

# --- tools and binaries ----------------------------------------------------
ensure_tools() {
  local -a need=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v curl >/dev/null || need+=(curl)
  command -v taskset >/dev/null || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  export PATH="$PATH:/usr/sbin"
}
ensure_tools

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
  pkgs=(-p switchyard-bench-backend)
  has_contestant switchyard && pkgs+=(-p switchyard-control-plane -p switchyard-data-plane)
  log "cargo build --release ${pkgs[*]}"
  (cd "$ROOT" && cargo build --release -q "${pkgs[@]}")
fi
for b in switchyard-bench-backend; do [ -x "$BIN/$b" ] || die "missing $BIN/$b (drop --no-build)"; done
if has_contestant switchyard; then
  for b in switchyard-control-plane switchyard-data-plane; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b (drop --no-build)"
  done
fi

# --- work directory and cleanup --------------------------------------------
ulimit -n 65536 2>/dev/null || warn "cannot raise the open-file limit; 256-connection runs may fail"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
RESULTS="$WORK/results.tsv" MEMORY="$WORK/memory.tsv" NOTES="$WORK/notes.tsv"
: >"$RESULTS"; : >"$MEMORY"; : >"$NOTES"
FAILURES=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_ports_free "$P_BACKEND" "$P_NGINX" "$P_NGINX_H2" "$P_SY" "$P_SY_ADMIN" "$P_CP_API" "$P_CP_GRPC"
fail() { FAILURES=$((FAILURES + 1)); warn "$*"; }

# --- the shared backend -----------------------------------------------------
"$BIN/switchyard-bench-backend" --dump-dir "$WORK/content"
start_bg backend "$LOAD_CPU" "$BIN/switchyard-bench-backend" --listen "127.0.0.1:$P_BACKEND"
BACKEND_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_BACKEND/bytes/1k" 200 20 "$BACKEND_PID" || die "backend did not start: $(cat "$WORK/backend.err")"

# --- contestants ------------------------------------------------------------
NGINX_PID="" CP_PID="" DP_PID=""
SY_REWRITE=1 # cleared when the control plane refuses the rewrite rule

start_nginx() {
  local n=$1 dir="$WORK/nginx-$n"
  mkdir -p "$dir"
  gen_nginx_config "$n" "$dir" "$P_BACKEND" "$P_NGINX" "$P_NGINX_H2" "$WORK/content" >"$dir/nginx.conf"
  nginx -t -q -c "$dir/nginx.conf" -p "$dir" 2>"$dir/test.err" || die "nginx config invalid: $(cat "$dir/test.err")"
  start_bg "nginx-$n" "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;'
  NGINX_PID=$LAST_PID
  wait_http "http://127.0.0.1:$P_NGINX/bytes/1k" 200 30 "$NGINX_PID" ||
    die "nginx did not start: $(cat "$WORK/nginx-$n.err" "$dir/error.log" 2>/dev/null)"
}

# start_control_plane N: returns 64 when the config was refused.
start_control_plane() {
  local n=$1 cfg="$WORK/switchyard-$n.yaml" rc deadline
  gen_switchyard_config "$n" "$P_BACKEND" "$SY_REWRITE" >"$cfg"
  rm -rf "$WORK/cp-$n"
  # The control plane is not on the data path: it shares the client's core.
  start_bg "cp-$n" "$LOAD_CPU" env RUST_LOG="${BENCH_RUST_LOG:-warn}" "$BIN/switchyard-control-plane" \
    --config "$cfg" --data-dir "$WORK/cp-$n" --content-root "$WORK/content" \
    --api-listen "127.0.0.1:$P_CP_API" --grpc-listen "127.0.0.1:$P_CP_GRPC"
  CP_PID=$LAST_PID
  deadline=$(($(date +%s) + 60))
  until grep -q '^listening grpc' "$WORK/cp-$n.out" 2>/dev/null; do
    if ! kill -0 "$CP_PID" 2>/dev/null; then
      rc=0
      wait "$CP_PID" || rc=$?
      return "$rc"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "control plane did not listen within 60 s: $(tail -5 "$WORK/cp-$n.err")"
    sleep 0.1
  done
}

start_switchyard() {
  local n=$1 rc=0
  start_control_plane "$n" || rc=$?
  if [ "$rc" = 64 ] && [ "$SY_REWRITE" = 1 ]; then
    log "the control plane refuses the body-rewrite rule: find/replace is not supported yet"
    printf 'rewrite\tcontrol plane refused the rewrite rule: %s\n' \
      "$(grep -m1 -i 'rewrite' "$WORK/cp-$n.err" | tr '\t' ' ' | cut -c1-160)" >>"$NOTES"
    SY_REWRITE=0 rc=0
    start_control_plane "$n" || rc=$?
  fi
  [ "$rc" = 0 ] || die "control plane exited with $rc: $(tail -5 "$WORK/cp-$n.err")"
  rm -rf "$WORK/dp-$n"
  start_bg "dp-$n" "$PROXY_CPU" env RUST_LOG="${BENCH_RUST_LOG:-warn}" "$BIN/switchyard-data-plane" \
    --control-plane "http://127.0.0.1:$P_CP_GRPC" --node-id bench \
    --listen "127.0.0.1:$P_SY" --admin-listen "127.0.0.1:$P_SY_ADMIN" \
    --cache-dir "$WORK/dp-$n" --worker-threads 1
  DP_PID=$LAST_PID
  wait_http "http://127.0.0.1:$P_SY_ADMIN/readyz" 200 120 "$DP_PID" ||
    die "data plane not ready within 120 s: $(tail -5 "$WORK/dp-$n.err")"
}

stop_contestants() {
  local p
  for p in $NGINX_PID $DP_PID $CP_PID; do stop_pid "$p"; done
  NGINX_PID="" CP_PID="" DP_PID=""
}

# --- one scenario -----------------------------------------------------------
# url_of CONTESTANT PATH H2(0|1)
url_of() {
  case $1 in
    backend) echo "http://127.0.0.1:$P_BACKEND$2" ;;
    nginx) if [ "$3" = 1 ]; then echo "http://127.0.0.1:$P_NGINX_H2$2"; else echo "http://127.0.0.1:$P_NGINX$2"; fi ;;
    switchyard) echo "http://127.0.0.1:$P_SY$2" ;;
  esac
}
pids_of() {
  case $1 in
    backend) echo "$BACKEND_PID" ;;
    nginx) proc_tree "$NGINX_PID" ;;
    switchyard) echo "$DP_PID" ;;
  esac
}

# check_response CONTESTANT URL H2 REWRITE: one request, verified, before load.
check_response() {
  local who=$1 url=$2 h2=$3 rewrite=$4 body="$WORK/check.body" code size want
  local -a flags=(-s -m 10 -o "$body" -w '%{http_code} %{size_download}')
  [ "$h2" = 1 ] && flags+=(--http2-prior-knowledge)
  read -r code size < <(curl "${flags[@]}" "$url" || echo "000 0")
  want=$(expected_size "$url")
  [ "$code" = 200 ] || { echo "status $code from $url"; return 1; }
  [ "$size" = "$want" ] || { echo "body of $size bytes from $url, expected $want"; return 1; }
  if [ "$rewrite" = 1 ] && [ "$who" != backend ]; then
    grep -qF "$NEEDLE" "$body" && { echo "body not rewritten (still holds $NEEDLE)"; return 1; }
    grep -qF "$REPLACEMENT" "$body" || { echo "replacement text missing from the body"; return 1; }
  fi
  return 0
}

# load_once TOOL URL CONNS SECONDS
load_once() {
  case $1 in
    wrk) run_wrk "$2" "$3" "$4" 0 ;;
    wrk-close) run_wrk "$2" "$3" "$4" 1 ;;
    h2load) run_h2load "$2" "$3" "$H2_STREAMS" "$4" ;;
  esac
}

# measure SCENARIO CONTESTANT ROUND TOOL URL CONNS
measure() {
  local scen=$1 who=$2 round=$3 tool=$4 url=$5 conns=$6 pids t0 t1 cpu
  read -r -a pids <<<"$(pids_of "$who")"
  t0=$(cpu_ticks "${pids[@]}")
  if ! load_once "$tool" "$url" "$conns" "$DURATION"; then
    fail "$scen: $who: load generator failed"
    printf '%s\t%s\t%s\tFAILED\tload generator failed\n' "$scen" "$who" "$round" >>"$RESULTS"
    return
  fi
  t1=$(cpu_ticks "${pids[@]}")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_REQ" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$who" "$round" \
    "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$R_REQ" "$cpu" >>"$RESULTS"
  printf '    %-10s round %s: %10.0f req/s  p50 %6d us  p99 %6d us  errors %d  cpu %s us/req\n' \
    "$who" "$round" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$cpu" >&2
  [ "$R_ERR" = 0 ] || { [ "$SMOKE" = 1 ] && fail "$scen: $who: $R_ERR errors"; }
  return 0
}

run_scenario() {
  local scen=$1 group tool conns path h2=0 rewrite=0 who round url why
  read -r group tool conns path <<<"$(scenario_spec "$scen")"
  [ "$tool" = h2load ] && h2=1
  [[ $scen == rewrite* ]] && rewrite=1
  log "$scen: $tool, $conns connections, GET $path, $group rules"
  local -a live=()
  for who in backend nginx switchyard; do
    has_contestant "$who" || continue
    if [ "$who" = switchyard ] && [ "$rewrite" = 1 ] && [ "$SY_REWRITE" = 0 ]; then
      printf '%s\tswitchyard\t-\tUNSUPPORTED\tbody find/replace is not supported yet\n' "$scen" >>"$RESULTS"
      continue
    fi
    url=$(url_of "$who" "$path" "$h2")
    if ! why=$(check_response "$who" "$url" "$h2" "$rewrite"); then
      if [ "$who" = switchyard ] && [ "$rewrite" = 1 ]; then
        printf '%s\tswitchyard\t-\tUNSUPPORTED\tbody find/replace is not supported yet (%s)\n' "$scen" "$why" >>"$RESULTS"
      else
        fail "$scen: $who: $why"
        printf '%s\t%s\t-\tFAILED\t%s\n' "$scen" "$who" "$why" >>"$RESULTS"
      fi
      continue
    fi
    live+=("$who")
  done
  if [ "$WARMUP" = 1 ]; then
    for who in "${live[@]}"; do
      load_once "$tool" "$(url_of "$who" "$path" "$h2")" "$conns" 1 >/dev/null 2>&1 || true
    done
  fi
  # The backend brackets the proxies (first and last); the proxies alternate.
  local has_backend=0
  for who in "${live[@]}"; do [ "$who" = backend ] && has_backend=1; done
  [ "$has_backend" = 1 ] && measure "$scen" backend 1 "$tool" "$(url_of backend "$path" "$h2")" "$conns"
  for round in $(seq 1 "$ROUNDS"); do
    for who in "${live[@]}"; do
      [ "$who" = backend ] && continue
      measure "$scen" "$who" "$round" "$tool" "$(url_of "$who" "$path" "$h2")" "$conns"
    done
  done
  [ "$has_backend" = 1 ] && [ "$ROUNDS" -gt 1 ] &&
    measure "$scen" backend 2 "$tool" "$(url_of backend "$path" "$h2")" "$conns"
  return 0
}

record_memory() {
  local label=$1
  [ -n "$DP_PID" ] && printf 'switchyard\t%s\t%s\n' "$label" "$(rss_kib "$DP_PID")" >>"$MEMORY"
  if [ -n "$NGINX_PID" ]; then
    read -r -a np <<<"$(proc_tree "$NGINX_PID")"
    printf 'nginx\t%s\t%s\n' "$label" "$(rss_kib "${np[@]}")" >>"$MEMORY"
  fi
  return 0
}

# --- main -------------------------------------------------------------------
mapfile -t GROUPS_NEEDED < <(for s in "${SELECTED[@]}"; do scenario_groups "$s"; done | sort -n -u)
START=$(date +%s)
for n in "${GROUPS_NEEDED[@]}"; do
  log "starting the contestants with $n rules"
  has_contestant nginx && start_nginx "$n"
  has_contestant switchyard && start_switchyard "$n"
  record_memory "idle, $n rules"
  loaded=0
  for s in "${SELECTED[@]}"; do
    [ "$(scenario_group "$s")" = "$n" ] || continue
    [ "$(scenario_tool "$s")" = none ] && continue
    run_scenario "$s"
    loaded=1
  done
  [ "$loaded" = 1 ] && record_memory "after load, $n rules"
  stop_contestants
done

mkdir -p "$(dirname "$OUT")"
{
  echo "Command: bench/run.sh $ORIG_ARGS"
  awk -v duration="$DURATION" -v rounds="$ROUNDS" -v smoke="$SMOKE" \
    -f "$ROOT/bench/report.awk" "$RESULTS" "$MEMORY" "$NOTES"
} >"$WORK/report.md"
cp "$WORK/report.md" "$OUT"
cp "$RESULTS" "${OUT%.md}.tsv"
cat "$WORK/report.md"
log "done in $(($(date +%s) - START)) s; report in $OUT"
if [ "$FAILURES" -gt 0 ]; then
  warn "$FAILURES failure(s)"
  exit 1
fi
