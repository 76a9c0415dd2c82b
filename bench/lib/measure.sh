# shellcheck shell=bash
# Measuring scenarios: verify one response per contestant, warm up, then the
# backend alone, the proxies alternating for ROUNDS rounds, the backend again.
# Each run appends one line per scenario to $RESULTS:
#   scenario contestant round rps p50_us p99_us errors requests cpu_us_per_req other_pct
# where other_pct is the share of the proxy core busy with anything but the
# contestant (other processes on the machine, interrupts): the run's noise.
# or `scenario contestant round FAILED|UNSUPPORTED reason`.
#
# Needs: RESULTS, ROUNDS, DURATION, WARMUP, SMOKE, H2_STREAMS, CLK_TCK and
# the helpers of common.sh, load.sh and contestants.sh.

# check_response CONTESTANT URL H2 REWRITE: prints why the answer is wrong.
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
    h1-rate) run_h2load "$2" "$3" 1 "$4" --h1 --rps="$H1_RATE_PER_CONN" ;;
    *) die "unknown load tool $1" ;;
  esac
}

# measure "SCENARIOS" CONTESTANT N ROUND TOOL URL CONNS: one measured run,
# recorded under each of SCENARIOS (the backend run serves a whole set).
measure() {
  local scens=$1 who=$2 n=$3 round=$4 tool=$5 url=$6 conns=$7 t0 t1 cpu s c0 c1 other own
  local -a pids
  read -r -a pids <<<"$(pids_of "$who" "$n")"
  c0=$(core_jiffies "$PROXY_CPU")
  t0=$(cpu_ticks "${pids[@]}")
  if ! load_once "$tool" "$url" "$conns" "$DURATION"; then
    fail "$scens: $who: load generator failed"
    for s in $scens; do printf '%s\t%s\t%s\tFAILED\tload generator failed\n' "$s" "$who" "$round" >>"$RESULTS"; done
    return 0
  fi
  t1=$(cpu_ticks "${pids[@]}")
  c1=$(core_jiffies "$PROXY_CPU")
  # The backend runs on the client core: all of the proxy core's work is other.
  own=$((t1 - t0))
  [ "$who" != backend ] || own=0
  other=$(awk -v a="$c0" -v b="$c1" -v own="$own" 'BEGIN {
    split(a, x, " "); split(b, y, " "); total = y[2] - x[2]; busy = y[1] - x[1] - own
    if (busy < 0) busy = 0
    printf "%.0f", (total > 0 ? 100 * busy / total : 0) }')
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$R_REQ" 'BEGIN { printf "%.2f", d * 1e6 / hz / r }')
  for s in $scens; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$who" "$round" \
      "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$R_REQ" "$cpu" "$other" >>"$RESULTS"
  done
  printf '    %-22s round %s: %9.0f req/s  p50 %6d us  p99 %6d us  errors %d  cpu %s us/req  core %s other %s%%\n' \
    "$who${n:+ ($n rules)}" "$round" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$cpu" "$PROXY_CPU" "$other" >&2
  if [ "$R_ERR" != 0 ] && [ "$SMOKE" = 1 ]; then fail "$scens: $who: $R_ERR errors"; fi
  return 0
}

# run_set SCENARIO...: scenarios sharing tool, connections and path (the
# routing-scale ones differ only in rule count) are measured together, their
# proxies alternating run by run.
run_set() {
  local scens="$*" tool conns path h2=0 rewrite=0 s n who round url why entry
  read -r _ tool conns path <<<"$(scenario_spec "$1")"
  [ "$tool" = h2load ] && h2=1
  [[ $1 == rewrite* ]] && rewrite=1
  log "$scens: $tool, $conns connections, GET $path"
  local -a live=()
  local backend_ok=0
  if has_contestant backend; then
    url=$(url_of backend 0 "$path" "$h2")
    if why=$(check_response backend "$url" "$h2" 0); then
      backend_ok=1
    else
      fail "$scens: backend: $why"
      for s in $scens; do printf '%s\tbackend\t-\tFAILED\t%s\n' "$s" "$why" >>"$RESULTS"; done
    fi
  fi
  for s in $scens; do
    n=$(scenario_group "$s")
    for who in nginx switchyard; do
      has_contestant "$who" || continue
      if [ "$who" = switchyard ] && [ "$rewrite" = 1 ] && [ "$SY_REWRITE" = 0 ]; then
        printf '%s\tswitchyard\t-\tUNSUPPORTED\tbody find/replace is not supported yet\n' "$s" >>"$RESULTS"
        continue
      fi
      url=$(url_of "$who" "$n" "$path" "$h2")
      if ! why=$(check_response "$who" "$url" "$h2" "$rewrite"); then
        if [ "$who" = switchyard ] && [ "$rewrite" = 1 ]; then
          printf '%s\tswitchyard\t-\tUNSUPPORTED\tbody find/replace is not supported yet (%s)\n' "$s" "$why" >>"$RESULTS"
        else
          fail "$s: $who: $why"
          printf '%s\t%s\t-\tFAILED\t%s\n' "$s" "$who" "$why" >>"$RESULTS"
        fi
        continue
      fi
      live+=("$s $who $n")
    done
  done
  if [ "$WARMUP" = 1 ]; then
    [ "$backend_ok" = 1 ] && { load_once "$tool" "$(url_of backend 0 "$path" "$h2")" "$conns" 1 >/dev/null 2>&1 || true; }
    for entry in "${live[@]}"; do
      read -r s who n <<<"$entry"
      load_once "$tool" "$(url_of "$who" "$n" "$path" "$h2")" "$conns" 1 >/dev/null 2>&1 || true
    done
  fi
  [ "$backend_ok" = 1 ] && measure "$scens" backend "" 1 "$tool" "$(url_of backend 0 "$path" "$h2")" "$conns"
  local i
  local -a turn
  for round in $(seq 1 "$ROUNDS"); do
    # Every other round in reverse order: the run that always came second
    # would carry the machine's drift over the scenario.
    turn=()
    if [ $((round % 2)) = 1 ]; then
      turn=("${live[@]}")
    else
      for ((i = ${#live[@]} - 1; i >= 0; i--)); do turn+=("${live[i]}"); done
    fi
    for entry in "${turn[@]}"; do
      read -r s who n <<<"$entry"
      measure "$s" "$who" "$n" "$round" "$tool" "$(url_of "$who" "$n" "$path" "$h2")" "$conns"
    done
  done
  if [ "$backend_ok" = 1 ] && [ "$ROUNDS" -gt 1 ]; then
    measure "$scens" backend "" 2 "$tool" "$(url_of backend 0 "$path" "$h2")" "$conns"
  fi
  return 0
}
