#!/usr/bin/env bash
# Switchyard vs nginx, side by side on one machine: see bench/README.md.
#
#   bench/run.sh                  # every scenario, 3 rounds of 3 s per contestant
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
# shellcheck source=lib/contestants.sh
source "$LIB_DIR/contestants.sh"
# shellcheck source=lib/measure.sh
source "$LIB_DIR/measure.sh"

usage() {
  cat <<'EOF'
usage: bench/run.sh [options] [scenario...]

  --smoke              each scenario once for ~1 s, no warm-up (exit 1 on any failure)
  --duration SECONDS   length of one measured run (default 3)
  --rounds N           A,B rounds per scenario (default 3: nginx, switchyard, nginx, ...)
  --contestants LIST   comma list of backend,nginx,switchyard (default all three)
  --out FILE           also write the report (markdown) here (default target/bench/latest.md)
  --no-build           use the binaries already built
  --no-pgo             data plane built with --profile dist alone (default: bench/pgo.sh,
                       dist plus profile-guided optimisation, as shipped)
  --debug              build and run debug binaries (a quicker --smoke for the test suite)
  --keep               keep the work directory (configs, logs, raw results)
  --list               list the scenarios and exit

Scenarios (default: all):
EOF
  scenario_list | sed 's/^/  /'
}

ORIG_ARGS="$*"
SMOKE=0 DURATION="" ROUNDS="" BUILD=1 KEEP=0 PROFILE=release PGO=1
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
    --no-pgo) PGO=0 ;;
    --debug) PROFILE=debug ;;
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
  DURATION=${DURATION:-3} ROUNDS=${ROUNDS:-3} WARMUP=1
fi
[ ${#SELECTED[@]} -gt 0 ] || mapfile -t SELECTED < <(scenario_names)
for s in "${SELECTED[@]}"; do scenario_exists "$s" || die "unknown scenario $s (see --list)"; done
has_contestant() { [[ ",$CONTESTANTS," == *",$1,"* ]]; }
for c in ${CONTESTANTS//,/ }; do
  case $c in backend | nginx | switchyard) ;; *) die "unknown contestant $c (backend, nginx, switchyard)" ;; esac
done

# Ports, all on loopback: the backend on BASE+1, the contestants from BASE+10.
BASE=${BENCH_PORT_BASE:-28100}
P_BACKEND=$((BASE + 1))
PROXY_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || warn "fewer than 2 cores: proxy and client share a core, numbers mean little"

# --- tools and binaries ----------------------------------------------------
ensure_tools nginx

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
# The data plane under test is built as for production (`dist`: fat LTO,
# one codegen unit, and profile-guided by bench/pgo.sh unless --no-pgo);
# the control plane and the backend only need `release`.
DP_BIN=$BIN
if [ "$PROFILE" = release ]; then
  if [ "$PGO" = 1 ]; then
    DP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/pgo/use/dist"
  else
    DP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/dist"
  fi
fi
if [ "$BUILD" = 1 ]; then
  build=(cargo build -q -p switchyard-bench-backend)
  [ "$PROFILE" = release ] && build+=(--release)
  if has_contestant switchyard; then build+=(-p switchyard-control-plane); fi
  if has_contestant switchyard && [ "$PROFILE" = debug ]; then build+=(-p switchyard-data-plane); fi
  log "${build[*]}"
  (cd "$ROOT" && "${build[@]}")
  if has_contestant switchyard && [ "$PROFILE" = release ] && [ "$PGO" = 1 ]; then
    log "bench/pgo.sh (the data plane with profile-guided optimisation)"
    "$ROOT/bench/pgo.sh"
  elif has_contestant switchyard && [ "$PROFILE" = release ]; then
    log "cargo build -q --profile dist -p switchyard-data-plane"
    (cd "$ROOT" && cargo build -q --profile dist -p switchyard-data-plane)
  fi
fi
[ "$PROFILE" = release ] || warn "debug binaries: the figures say nothing about performance"
[ -x "$BIN/switchyard-bench-backend" ] || die "missing $BIN/switchyard-bench-backend (drop --no-build)"
if has_contestant switchyard; then
  [ -x "$DP_BIN/switchyard-data-plane" ] || die "missing $DP_BIN/switchyard-data-plane (drop --no-build)"
  for b in switchyard-control-plane; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b (drop --no-build)"
  done
fi

# --- work directory and cleanup --------------------------------------------
# 256 client connections need as many upstream ones, per contestant.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] || warn "open-file limit $(ulimit -n): 256-connection runs may fail"
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

mapfile -t GROUPS_NEEDED < <(for s in "${SELECTED[@]}"; do scenario_groups "$s"; done | sort -n -u)
mapfile -t PORTS < <(all_ports "${GROUPS_NEEDED[@]}")
require_ports_free "${PORTS[@]}"
fail() { FAILURES=$((FAILURES + 1)); warn "$*"; }

# --- the shared backend -----------------------------------------------------
"$BIN/switchyard-bench-backend" --dump-dir "$WORK/content"
start_bg backend "$LOAD_CPU" "$BIN/switchyard-bench-backend" --listen "127.0.0.1:$P_BACKEND"
BACKEND_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_BACKEND/bytes/1k" 200 20 "$BACKEND_PID" || die "backend did not start: $(cat "$WORK/backend.err")"

# --- main -------------------------------------------------------------------
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for n in "${GROUPS_NEEDED[@]}"; do
  log "starting the contestants with $n rules"
  if has_contestant nginx; then start_nginx "$n"; fi
  if has_contestant switchyard; then start_switchyard "$n"; fi
  record_memory "idle, $n rules" "$n"
done

# Scenarios run in table order; the routing-scale ones as one set whose
# proxies alternate across rule counts.
RULES_SET=()
for s in "${SELECTED[@]}"; do
  if [[ $s == rules-* ]]; then RULES_SET+=("$s"); fi
done
RULES_DONE=0
for s in "${SELECTED[@]}"; do
  [ "$(scenario_tool "$s")" = none ] && continue
  if [[ $s == rules-* ]]; then
    [ "$RULES_DONE" = 1 ] && continue
    run_set "${RULES_SET[@]}"
    RULES_DONE=1
  else
    run_set "$s"
  fi
done
for n in "${GROUPS_NEEDED[@]}"; do record_memory "after load, $n rules" "$n"; done
stop_all

mkdir -p "$(dirname "$OUT")"
{
  echo "Command: \`bench/run.sh $ORIG_ARGS\`"
  echo
  echo "Data plane binary: ${DP_BIN#"$ROOT/"}/switchyard-data-plane (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes'))."
  echo
  echo "Machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1); $(date -u '+%Y-%m-%d %H:%M UTC');"
  echo "load average $LOAD_BEFORE before the run, $(cut -d' ' -f1-3 /proc/loadavg) after (other work on the machine shows up as noise)."
  awk -v duration="$DURATION" -v rounds="$ROUNDS" -v smoke="$SMOKE" -v profile="$PROFILE" \
    -f "$ROOT/bench/report.awk" "$RESULTS" "$MEMORY" "$NOTES"
} >"$WORK/report.md"
cp "$WORK/report.md" "$OUT"
cp "$RESULTS" "${OUT%.md}.tsv"
cp "$MEMORY" "${OUT%.md}.memory.tsv"
cp "$NOTES" "${OUT%.md}.notes.tsv"
cat "$WORK/report.md"
log "done in $(($(date +%s) - START)) s; report in $OUT"
if [ "$FAILURES" -gt 0 ]; then
  warn "$FAILURES failure(s)"
  exit 1
fi
