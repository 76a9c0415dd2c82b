# Turns the harness's raw results into the markdown report.
# Inputs (in this order): results.tsv, memory.tsv, notes.tsv.
#   results: scenario contestant round rps p50_us p99_us errors requests cpu_us_per_req other_pct
#            or: scenario contestant round FAILED|UNSUPPORTED reason
#   memory:  contestant label rss_kib
#   notes:   scenario note
# Variables: duration, rounds, smoke, profile.

BEGIN { FS = "\t" }
# By position, so that an empty input file shifts nothing.
{ file = (FILENAME == ARGV[1]) ? 1 : (FILENAME == ARGV[2]) ? 2 : 3 }

file == 1 {
  s = $1; w = $2
  if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
  if ($4 == "FAILED" || $4 == "UNSUPPORTED") { status[s, w] = $4; reason[s, w] = $5; next }
  k = ++n[s, w]
  v_rps[s, w, k] = $4; v_p50[s, w, k] = $5; v_p99[s, w, k] = $6; v_cpu[s, w, k] = $9
  err[s, w] += $7; req[s, w] += $8
  # By round too, to pair the contestants' runs of one round.
  rd = $3 + 0
  r_rps[s, w, rd] = $4; r_p99[s, w, rd] = $6; r_cpu[s, w, rd] = $9
  if (rd > maxround) maxround = rd
  # Noise of the proxy runs (a backend run is counted once per scenario set).
  if (w != "backend") { noise[++nn] = $10 + 0; snoise[s, ++snn[s]] = $10 + 0 }
  next
}
file == 2 {
  if (!($2 in mseen)) { mseen[$2] = 1; morder[++nm] = $2 }
  mem[$1, $2] = $3
  next
}
file == 3 { note[$1] = note[$1] (note[$1] == "" ? "" : "; ") $2; next }

function has(s, w) { return ((s, w) in n) }
# The median over the rounds: one run disturbed by other load on the machine
# moves it less than it would move a mean.
function median(a, s, w,   i, j, c, t, x) {
  c = n[s, w]
  for (i = 1; i <= c; i++) x[i] = a[s, w, i] + 0
  for (i = 2; i <= c; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return (c % 2) ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
}
# The median noise of a scenario's proxy runs.
function scen_noise(s,   i, j, c, t, x) {
  c = snn[s]
  for (i = 1; i <= c; i++) x[i] = snoise[s, i]
  for (i = 2; i <= c; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return c ? x[int((c + 1) / 2)] : 0
}
function med(a, s, w) {
  if (a == "rps") return median(v_rps, s, w)
  if (a == "p50") return median(v_p50, s, w)
  if (a == "p99") return median(v_p99, s, w)
  return median(v_cpu, s, w)
}
# The median over the rounds of one round's ratio (s1/w1 against s2/w2 in
# the same round): a round's runs are back to back, so the machine's speed
# drifting over a scenario (it does, by up to a third) cancels out, where a
# ratio of two medians keeps it. 0 when no round has both.
function pair(a, s1, w1, s2, w2,   rd, c, i, j, t, x, v2) {
  c = 0
  for (rd = 1; rd <= maxround; rd++) {
    if (!((s1, w1, rd) in r_cpu) || !((s2, w2, rd) in r_cpu)) continue
    v2 = pick(a, s2, w2, rd)
    if (v2 > 0) x[++c] = pick(a, s1, w1, rd) / v2
  }
  if (c == 0) return 0
  for (i = 2; i <= c; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
  return (c % 2) ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
}
function pick(a, s, w, rd) {
  if (a == "rps") return r_rps[s, w, rd] + 0
  if (a == "p99") return r_p99[s, w, rd] + 0
  return r_cpu[s, w, rd] + 0
}
function pratio(a, s1, w1, s2, w2,   v) { v = pair(a, s1, w1, s2, w2); return (v > 0) ? sprintf("%.2fx", v) : "" }
function ms(us) { return sprintf("%.2f ms", us / 1000) }
function ratio(a, b) { return (b > 0) ? sprintf("%.2fx", a / b) : "" }
function thousands(x,   s, out) {
  s = sprintf("%.0f", x); out = ""
  while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
  return s out
}
function mib(kib) { return sprintf("%.1f MiB", kib / 1024) }
function verdict(ok) { return ok ? "met" : "**missed**" }

END {
  printf "\nEach proxy runs one worker on core 0 (nginx `worker_processes 1`, Switchyard `--worker-threads 1`);\n"
  printf "the backend and the load generator share core 1. %s s per run, %s round(s) of nginx/Switchyard\n", duration, rounds
  printf "alternating (every other round in reverse order), the backend alone measured before and after. Figures are\n"
  printf "medians over the runs; a ratio against nginx is the median of each round's ratio (the two runs of a round are back to back).\n"
  printf "CPU/req = utime+stime of the contestant's processes over the run / completed requests.\n\n"
  if (nn > 0) {
    for (i = 2; i <= nn; i++) { t = noise[i]; for (j = i - 1; j >= 1 && noise[j] > t; j--) noise[j + 1] = noise[j]; noise[j + 1] = t }
    printf "Noise: during the proxy runs, the proxy core spent a median %d%% (worst run %d%%) of the time on work other than the contestant's\n", noise[int((nn + 1) / 2)], noise[nn]
    printf "processes (other users of the machine, interrupts, network softirqs not charged to a process).\n\n"
  }
  if (profile == "debug") printf "**Debug binaries**: these figures say nothing about performance.\n\n"
  if (smoke == 1) printf "**Smoke run**: 1 s runs, no warm-up; the numbers prove the harness works and mean little.\n\n"

  printf "| scenario | contestant | req/s | p50 | p99 | errors | CPU µs/req | req/s vs nginx | CPU vs nginx | p99 vs nginx | req/s vs backend |\n"
  printf "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
  split("backend nginx switchyard", who, " ")
  for (i = 1; i <= ns; i++) {
    s = order[i]; first = 1
    for (j = 1; j <= 3; j++) {
      w = who[j]; label = (first ? s : "")
      if ((s, w) in status) {
        printf "| %s | %s | %s | | | | | | | | |\n", label, w, (status[s, w] == "UNSUPPORTED" ? "not supported yet" : "FAILED: " reason[s, w])
        first = 0; continue
      }
      if (!has(s, w)) continue
      r = med("rps", s, w); c = med("cpu", s, w); q99 = med("p99", s, w)
      vs_n = vs_nc = vs_np = vs_b = ""
      if (w != "nginx" && w != "backend" && has(s, "nginx")) {
        vs_n = pratio("rps", s, w, s, "nginx"); vs_nc = pratio("cpu", s, w, s, "nginx"); vs_np = pratio("p99", s, w, s, "nginx")
      }
      if (w != "backend" && has(s, "backend")) vs_b = ratio(r, med("rps", s, "backend"))
      printf "| %s | %s | %s | %s | %s | %d | %.2f | %s | %s | %s | %s |\n", label, w, thousands(r), ms(med("p50", s, w)), ms(q99), err[s, w], c, vs_n, vs_nc, vs_np, vs_b
      first = 0
    }
  }

  printf "\nHow to rank each scenario (the backend alone must serve at least twice the faster proxy,\nelse the client core is the ceiling and CPU per request is the figure that ranks):\n\n"
  for (i = 1; i <= ns; i++) {
    s = order[i]
    best = 0
    if (has(s, "nginx")) best = med("rps", s, "nginx")
    if (has(s, "switchyard") && med("rps", s, "switchyard") > best) best = med("rps", s, "switchyard")
    line = ""
    if (s == "latency-1k") {
      line = "fixed offered load (every contestant serves the same rate): rank on p99 latency and CPU/request"
    } else if (has(s, "backend") && best > 0) {
      b = med("rps", s, "backend")
      if (b < 2 * best)
        line = sprintf("client is the ceiling (backend alone %s req/s < 2 x %s): rank on CPU/request", thousands(b), thousands(best))
      else
        line = sprintf("proxy-bound (backend alone %s req/s >= 2 x %s): rank on req/s", thousands(b), thousands(best))
    }
    if (has(s, "nginx") && has(s, "switchyard"))
      line = line sprintf("; Switchyard %.2f vs nginx %.2f µs CPU/req (%s), %s req/s (%s)", med("cpu", s, "switchyard"), med("cpu", s, "nginx"), pratio("cpu", s, "switchyard", s, "nginx"), thousands(med("rps", s, "switchyard")), pratio("rps", s, "switchyard", s, "nginx"))
    if (snn[s] > 0) line = line sprintf("; noise %d%%", scen_noise(s))
    if (s in note) line = line "; " note[s]
    if (line != "") printf "- `%s`: %s\n", s, line
  }

  if (has("rules-10", "nginx") || has("rules-10", "switchyard")) {
    printf "\nRouting scale (against the 10-rule config; the rule counts alternate within one run):\n\n"
    printf "| rules | switchyard req/s | vs 10 rules | CPU µs/req | vs 10 rules | nginx req/s | vs 10 rules | CPU µs/req | vs 10 rules |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    split("10 1000 10000", rules, " ")
    for (k = 1; k <= 3; k++) {
      s = "rules-" rules[k]
      if (!has(s, "switchyard") && !has(s, "nginx")) continue
      sy = has(s, "switchyard") ? med("rps", s, "switchyard") : 0
      ng = has(s, "nginx") ? med("rps", s, "nginx") : 0
      syc = has(s, "switchyard") ? med("cpu", s, "switchyard") : 0
      ngc = has(s, "nginx") ? med("cpu", s, "nginx") : 0
      printf "| %s | %s | %s | %.2f | %s | %s | %s | %.2f | %s |\n", thousands(rules[k]), thousands(sy), pratio("rps", s, "switchyard", "rules-10", "switchyard"), syc, pratio("cpu", s, "switchyard", "rules-10", "switchyard"), thousands(ng), pratio("rps", s, "nginx", "rules-10", "nginx"), ngc, pratio("cpu", s, "nginx", "rules-10", "nginx")
    }
  }

  if (nm > 0) {
    printf "\nMemory (VmRSS; nginx = master + worker):\n\n| when | switchyard data plane | nginx |\n|---|---:|---:|\n"
    for (k = 1; k <= nm; k++) {
      l = morder[k]
      printf "| %s | %s | %s |\n", l, (("switchyard", l) in mem ? mib(mem["switchyard", l]) : ""), (("nginx", l) in mem ? mib(mem["nginx", l]) : "")
    }
  }

  # The issue's targets, each a ratio from this run.
  printf "\nTargets (issue 8), from this run:\n\n"
  for (i = 1; i <= ns; i++) {
    s = order[i]
    if (!has(s, "switchyard") || !has(s, "nginx")) continue
    if (s ~ /^(get-1k|get-16k|replace|rewrite)/) {
      r = pair("rps", s, "switchyard", s, "nginx")
      c = pair("cpu", s, "switchyard", s, "nginx")
      printf "- `%s`: throughput %.2fx nginx (>= 1.0: %s), CPU/req %.2fx (<= 1.0: %s)\n", s, r, verdict(r >= 1.0), c, verdict(c <= 1.0)
    }
  }
  for (i = 1; i <= ns; i++) {
    s = order[i]
    if ((s, "switchyard") in status) printf "- `%s`: Switchyard %s\n", s, (status[s, "switchyard"] == "UNSUPPORTED" ? "does not support it yet: target missed" : "failed: " reason[s, "switchyard"])
  }
  worst = 0; worst_s = ""
  errs = 0
  for (i = 1; i <= ns; i++) {
    s = order[i]
    if (has(s, "switchyard")) { errs += err[s, "switchyard"]; sy_seen = 1 }
    if (!has(s, "switchyard") || !has(s, "nginx")) continue
    q = pair("p99", s, "switchyard", s, "nginx")
    if (q <= 0) continue
    if (s == "latency-1k") { fixed = q; continue }
    if (q > worst) { worst = q; worst_s = s }
  }
  if (fixed > 0) printf "- p99 latency <= 1.2x nginx's at the same offered load (`latency-1k`, 12,000 req/s): %.2fx: %s\n", fixed, verdict(fixed <= 1.2)
  if (worst_s != "") printf "- p99 latency <= 1.2x nginx's, each at its own saturation (the other scenarios): worst %.2fx (`%s`): %s\n", worst, worst_s, verdict(worst <= 1.2)
  if (sy_seen) printf "- zero errors (Switchyard, all scenarios): %d: %s\n", errs, verdict(errs == 0)
  if (has("rules-10", "switchyard") && has("rules-10000", "switchyard")) {
    r = pair("rps", "rules-10000", "switchyard", "rules-10", "switchyard")
    printf "- 10,000 rules cost <= 10%% throughput vs 10 rules: %.2fx: %s\n", r, verdict(r >= 0.9)
  }
  if (("switchyard", "idle, 10 rules") in mem)
    printf "- data plane idle <= 20 MiB RSS: %s: %s\n", mib(mem["switchyard", "idle, 10 rules"]), verdict(mem["switchyard", "idle, 10 rules"] <= 20 * 1024)
  if (("switchyard", "idle, 10000 rules") in mem)
    printf "- data plane with 10,000 rules <= 60 MiB RSS: %s: %s\n", mib(mem["switchyard", "idle, 10000 rules"]), verdict(mem["switchyard", "idle, 10000 rules"] <= 60 * 1024)
}
