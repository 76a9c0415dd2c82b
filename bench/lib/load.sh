# shellcheck shell=bash
# Load generators, pinned to the client core and bounded in time. Each sets
# R_REQ (completed requests), R_RPS, R_P50 and R_P99 (microseconds) and R_ERR
# (socket errors + non-2xx/3xx answers), and returns non-zero when the tool
# failed or printed nothing usable.

LOAD_CPU=${LOAD_CPU:-1}
LIB_DIR=${LIB_DIR:-$(dirname "${BASH_SOURCE[0]}")}

# run_wrk URL CONNS SECONDS CLOSE(0|1)
run_wrk() {
  local url=$1 conns=$2 secs=$3 close=$4 out line
  local -a extra=()
  [ "$close" = 1 ] && extra=(-H 'Connection: close')
  out=$(timeout --kill-after=5 $((secs + 20)) nice -n "$BENCH_NICE" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s --latency -s "$LIB_DIR/wrk-report.lua" \
    "${extra[@]}" "$url" 2>&1) || { warn "wrk failed: $out"; return 1; }
  line=$(grep '^RESULT ' <<<"$out") || { warn "wrk printed no result: $out"; return 1; }
  eval "$(awk '{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "R_REQ=%d R_P50=%d R_P99=%d R_ERR=%d ", v["requests"], v["p50_us"], v["p99_us"], v["socket_errors"] + v["status_errors"]
    printf "R_RPS=%.1f\n", (v["duration_us"] > 0 ? v["requests"] / (v["duration_us"] / 1e6) : 0)
  }' <<<"$line")"
  [ "$R_REQ" -gt 0 ] || { warn "wrk completed no request: $out"; return 1; }
}

# run_h2load URL CONNS STREAMS SECONDS [FLAG...]: HTTP/2 with prior knowledge
# (h2c), or what the flags ask for (--h1 --rps=N: HTTP/1.1 at a fixed rate).
# Percentiles come from the per-request log (third column: microseconds).
run_h2load() {
  local url=$1 conns=$2 streams=$3 secs=$4 out logf
  local -a extra=("${@:5}")
  logf=$(mktemp "$WORK/h2load.XXXXXX")
  out=$(timeout --kill-after=5 $((secs + 20)) nice -n "$BENCH_NICE" taskset -c "$LOAD_CPU" \
    h2load -t1 -c"$conns" -m"$streams" -D "$secs" --log-file="$logf" ${extra[@]+"${extra[@]}"} "$url" 2>&1) ||
    { warn "h2load failed: $out"; rm -f "$logf"; return 1; }
  # h2load's "failed" counts socket errors and non-2xx/3xx answers alike.
  eval "$(awk '
    /^finished in/ { gsub(",", ""); rps = $4 }
    /^requests:/ { gsub(",", ""); done = $6; failed = $10 }
    END { printf "R_RPS=%.1f R_REQ=%d R_ERR=%d\n", rps, done, failed }
  ' <<<"$out")"
  eval "$(cut -f3 "$logf" | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "R_P50=0 R_P99=0"; exit }
      i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
      i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
      printf "R_P50=%d R_P99=%d\n", v[i50], v[i99]
    }')"
  rm -f "$logf"
  [ "${R_REQ:-0}" -gt 0 ] || { warn "h2load completed no request: $out"; return 1; }
}
