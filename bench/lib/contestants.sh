# shellcheck shell=bash
# The contestants: for every rule count N in use, one nginx and one
# Switchyard (control plane + data plane), all started up front on their own
# loopback ports so that scenarios comparing rule counts can alternate between
# them within seconds. Idle contestants cost no CPU worth counting.
#
# Needs: WORK, BIN, BASE, P_BACKEND, PROXY_CPU, LOAD_CPU, NOTES.

declare -A NGINX_PID=() DP_PID=()
SY_REWRITE=1 # cleared when the control plane refuses the rewrite rule

# port ROLE N: the port of ROLE for the contestants with N rules.
port() {
  local slot
  case $2 in 10) slot=0 ;; 1000) slot=1 ;; 10000) slot=2 ;; *) die "no ports for $2 rules" ;; esac
  case $1 in
    nginx) echo $((BASE + 10 + slot * 10)) ;;
    nginx-h2) echo $((BASE + 11 + slot * 10)) ;;
    switchyard) echo $((BASE + 12 + slot * 10)) ;;
    dp-admin) echo $((BASE + 13 + slot * 10)) ;;
    cp-api) echo $((BASE + 14 + slot * 10)) ;;
    cp-grpc) echo $((BASE + 15 + slot * 10)) ;;
  esac
}

all_ports() {
  local n role
  echo "$P_BACKEND"
  for n in "$@"; do
    for role in nginx nginx-h2 switchyard dp-admin cp-api cp-grpc; do port "$role" "$n"; done
  done
}

start_nginx() {
  local n=$1 dir p
  dir="$WORK/nginx-$n"
  p=$(port nginx "$n")
  mkdir -p "$dir"
  gen_nginx_config "$n" "$dir" "$P_BACKEND" "$p" "$(port nginx-h2 "$n")" "$WORK/content" >"$dir/nginx.conf"
  nginx -t -q -c "$dir/nginx.conf" -p "$dir" 2>"$dir/test.err" || die "nginx config invalid: $(cat "$dir/test.err")"
  start_bg "nginx-$n" "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;'
  NGINX_PID[$n]=$LAST_PID
  wait_http "http://127.0.0.1:$p/bytes/1k" 200 30 "$LAST_PID" ||
    die "nginx did not start: $(cat "$WORK/nginx-$n.err" "$dir/error.log" 2>/dev/null)"
}

# start_control_plane N: returns the exit code when it stopped (64: the
# config was refused), 0 once it listens.
start_control_plane() {
  local n=$1 cfg rc deadline
  cfg="$WORK/switchyard-$n.yaml"
  gen_switchyard_config "$n" "$P_BACKEND" "$SY_REWRITE" >"$cfg"
  rm -rf "$WORK/cp-$n"
  # Not on the data path: it shares the client's core.
  start_bg "cp-$n" "$LOAD_CPU" env RUST_LOG="${BENCH_RUST_LOG:-warn}" "$BIN/switchyard-control-plane" \
    --config "$cfg" --data-dir "$WORK/cp-$n" --content-root "$WORK/content" \
    --api-listen "127.0.0.1:$(port cp-api "$n")" --grpc-listen "127.0.0.1:$(port cp-grpc "$n")"
  deadline=$(($(date +%s) + 60))
  until grep -q '^listening grpc' "$WORK/cp-$n.out" 2>/dev/null; do
    if ! kill -0 "$LAST_PID" 2>/dev/null; then
      rc=0
      wait "$LAST_PID" || rc=$?
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
    printf 'rewrite-16k\tthe control plane refuses the rewrite rule (%s)\n' \
      "$(grep -m1 -i 'rewrite' "$WORK/cp-$n.err" | sed "s|$WORK/||" | tr '\t' ' ' | cut -c1-160)" >>"$NOTES"
    SY_REWRITE=0 rc=0
    start_control_plane "$n" || rc=$?
  fi
  [ "$rc" = 0 ] || die "control plane exited with $rc: $(tail -5 "$WORK/cp-$n.err")"
  rm -rf "$WORK/dp-$n"
  start_bg "dp-$n" "$PROXY_CPU" env RUST_LOG="${BENCH_RUST_LOG:-warn}" "$DP_BIN/switchyard-data-plane" \
    --control-plane "http://127.0.0.1:$(port cp-grpc "$n")" --node-id "bench-$n" \
    --listen "127.0.0.1:$(port switchyard "$n")" --admin-listen "127.0.0.1:$(port dp-admin "$n")" \
    --cache-dir "$WORK/dp-$n" --worker-threads 1
  DP_PID[$n]=$LAST_PID
  wait_http "http://127.0.0.1:$(port dp-admin "$n")/readyz" 200 120 "$LAST_PID" ||
    die "data plane not ready within 120 s: $(tail -5 "$WORK/dp-$n.err")"
}

# url_of CONTESTANT N PATH H2(0|1)
url_of() {
  case $1 in
    backend) echo "http://127.0.0.1:$P_BACKEND$3" ;;
    nginx) if [ "$4" = 1 ]; then echo "http://127.0.0.1:$(port nginx-h2 "$2")$3"; else echo "http://127.0.0.1:$(port nginx "$2")$3"; fi ;;
    switchyard) echo "http://127.0.0.1:$(port switchyard "$2")$3" ;;
  esac
}

# pids_of CONTESTANT N: the processes whose CPU time is the contestant's.
pids_of() {
  case $1 in
    backend) echo "$BACKEND_PID" ;;
    nginx) proc_tree "${NGINX_PID[$2]}" ;;
    switchyard) echo "${DP_PID[$2]}" ;;
  esac
}

# record_memory LABEL N
record_memory() {
  local label=$1 n=$2 np
  [ -n "${DP_PID[$n]:-}" ] && printf 'switchyard\t%s\t%s\n' "$label" "$(rss_kib "${DP_PID[$n]}")" >>"$MEMORY"
  if [ -n "${NGINX_PID[$n]:-}" ]; then
    read -r -a np <<<"$(proc_tree "${NGINX_PID[$n]}")"
    printf 'nginx\t%s\t%s\n' "$label" "$(rss_kib "${np[@]}")" >>"$MEMORY"
  fi
  return 0
}
