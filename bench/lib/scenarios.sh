# shellcheck shell=bash
# The scenario table. Each row: name, rules in the config, load tool,
# connections, request path, description. Paths end in the backend body's
# name (1k, 16k, 256k, page.html), which is also how a response is checked.

# shellcheck disable=SC2034 # used by measure.sh
H2_STREAMS=10 # concurrent streams per h2c connection
# shellcheck disable=SC2034 # used by measure.sh
H1_RATE_PER_CONN=750 # latency-1k: 16 x 750 = 12,000 req/s, under both proxies' saturation

SCENARIOS=$(cat <<'EOF2'
get-1k-c16      10     wrk        16   /bytes/1k           small GET, keep-alive, 1 KiB, 16 connections
get-1k-c256     10     wrk        256  /bytes/1k           small GET, keep-alive, 1 KiB, 256 connections
get-16k-c16     10     wrk        16   /bytes/16k          GET, keep-alive, 16 KiB, 16 connections
get-16k-c256    10     wrk        256  /bytes/16k          GET, keep-alive, 16 KiB, 256 connections
get-256k-c16    10     wrk        16   /bytes/256k         large GET, keep-alive, 256 KiB, 16 connections
replace-1k      10     wrk        16   /replace/1k         replacement content from a file (nginx: alias), 1 KiB
replace-16k     10     wrk        16   /replace/page.html  replacement content from a file (nginx: alias), 16 KiB HTML
rewrite-16k     10     wrk        16   /rewrite/page.html  body find/replace on 16 KiB HTML (nginx: sub_filter, sub_filter_once off)
h2c-1k          10     h2load     16   /bytes/1k           h2c clients (h2load), 16 connections x 10 streams, 1 KiB
close-1k        10     wrk-close  16   /bytes/1k           a new connection per request (Connection: close), 1 KiB
latency-1k      10     h1-rate    16   /bytes/1k           small GET at a fixed 12,000 req/s (h2load --h1, 16 x 750/s): latency below saturation
rules-10        10     wrk        16   /bytes/1k           routing scale: 10 rules, the matching rule after all fillers
rules-1000      1000   wrk        16   /bytes/1k           routing scale: 1,000 rules
rules-10000     10000  wrk        16   /bytes/1k           routing scale: 10,000 rules
memory          10     none       0    -                   RSS of the data plane idle (10 rules) and with 10,000 rules loaded
EOF2
)

scenario_names() { awk '{ print $1 }' <<<"$SCENARIOS"; }
scenario_list() { awk '{ printf "%-14s", $1; $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' <<<"$SCENARIOS"; }
scenario_exists() { awk -v s="$1" '$1 == s { found = 1 } END { exit !found }' <<<"$SCENARIOS"; }
# scenario_spec NAME -> "rules tool connections path"
scenario_spec() { awk -v s="$1" '$1 == s { print $2, $3, $4, $5 }' <<<"$SCENARIOS"; }
scenario_group() { awk -v s="$1" '$1 == s { print $2 }' <<<"$SCENARIOS"; }
scenario_tool() { awk -v s="$1" '$1 == s { print $3 }' <<<"$SCENARIOS"; }

# The rule counts whose contestants a scenario needs started.
scenario_groups() {
  if [ "$1" = memory ]; then
    printf '10\n10000\n'
  else
    scenario_group "$1"
  fi
}

# expected_size URL: the body size the backend's body of that name has.
expected_size() {
  case ${1##*/} in
    1k) echo 1024 ;;
    16k | page.html) echo 16384 ;;
    256k) echo 262144 ;;
    *) echo 0 ;;
  esac
}
