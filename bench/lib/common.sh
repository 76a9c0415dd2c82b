# shellcheck shell=bash
# Shared helpers of the benchmark harness: logging, process lifecycle (every
# process started is recorded and killed on exit), ports and /proc readers.

BENCH_PIDS=()
# Everything the harness runs gets the same raised priority (root only), so
# builds and tests elsewhere on the machine disturb the measurement less.
if [ -z "${BENCH_NICE:-}" ]; then
  if [ "$(id -u)" = 0 ]; then BENCH_NICE=-20; else BENCH_NICE=0; fi
fi
# shellcheck disable=SC2034 # used by measure.sh
CLK_TCK=$(getconf CLK_TCK)

log() { printf '==> %s\n' "$*" >&2; }

# ensure_tools [nginx]: installs from Debian's packages what the load runs
# need and is missing (wrk, h2load, curl, taskset; nginx when asked).
ensure_tools() {
  local -a need=()
  if [ "${1:-}" = nginx ]; then
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  fi
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
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# start_bg NAME CPU CMD...: starts CMD pinned to CPU with stdout/stderr in
# $WORK/NAME.out/.err; its pid lands in LAST_PID and in the kill list.
start_bg() {
  local name=$1 cpu=$2
  shift 2
  nice -n "$BENCH_NICE" taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LAST_PID=$!
  BENCH_PIDS+=("$LAST_PID")
}

# stop_pid PID: TERM, then after a bounded wait KILL it and the children it
# had, so an nginx master never leaves orphaned workers behind.
stop_pid() {
  local pid=$1 kids
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" || true)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  for k in $pid $kids; do
    kill -KILL "$k" 2>/dev/null || true
  done
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    stop_pid "$pid"
  done
  BENCH_PIDS=()
}

# port_free PORT: true when nothing accepts on 127.0.0.1:PORT.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

require_ports_free() {
  local p
  for p in "$@"; do
    port_free "$p" || die "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE to move the harness's ports)"
  done
}

# wait_http URL CODE SECONDS [PID]: polls until URL answers CODE; fails early
# when PID (the process that should answer) has exited.
wait_http() {
  local url=$1 want=$2 secs=$3 pid=${4:-} deadline code
  deadline=$(($(date +%s) + secs))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 2
    fi
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.1
  done
  return 1
}

# cpu_ticks PID...: utime+stime of the processes (all their threads), in
# clock ticks. Field 2 (comm) may hold spaces, so cut after its ')'.
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# core_jiffies CPU: "busy total" jiffies of one core from /proc/stat (busy
# counts user, nice, system, irq, softirq and steal).
core_jiffies() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# rss_kib PID...: summed VmRSS (shared pages of nginx's master and worker are
# counted twice, which favours neither side much: the worker dominates).
rss_kib() {
  local pid total=0 v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# proc_tree PID: the pid and its direct children (nginx master + workers).
proc_tree() {
  local kids
  kids=$(pgrep -P "$1" | tr '\n' ' ' || true)
  echo "$1 $kids"
}
