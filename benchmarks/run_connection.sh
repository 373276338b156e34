#!/usr/bin/env bash
# Connection benchmarks: rediskit::Connection next to hiredis and redis-benchmark, on one
# throwaway redis-server. Prints one markdown table with the goals checked.
#
#   bash benchmarks/run_connection.sh
#
# Environment (all optional):
#   REPEAT=5         timed runs per workload (the median is reported, with the min-max spread)
#   DURATION=2       seconds per timed run (connection_bench, hiredis_bench)
#   WARMUP=1         seconds of warm-up per workload
#   RB_N_P1, RB_N_P16  requests per redis-benchmark run with -P 1 / -P 16 (default: sized
#                    from a short calibration run so that one run lasts about DURATION seconds)
#   JOBS=1           build parallelism (the machine is shared: keep it low)
#   SKIP_BUILD=1     use the binaries already built
#   RAW=file         also keep every raw output line in this file
#
# The server runs on core 0 and every client on core 1 (taskset), the same for every system.
# Needs redis-server, redis-benchmark, libhiredis-dev, cmake, ninja and g++: what is missing is
# installed with apt-get.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
RB_N_P1=${RB_N_P1:-}
RB_N_P16=${RB_N_P16:-}
JOBS=${JOBS:-1}

BENCH_NAME=run_connection
source "$here/lib.sh"
log() { bench_log "$@"; }

# ---- dependencies (apt-get only for what is missing) ----------------------------------------
bench_need redis-server redis-tools libhiredis-dev cmake ninja-build g++ gcc libssl-dev openssl \
  util-linux

# ---- build ----------------------------------------------------------------------------------
bin="$root/build/release/benchmarks"
if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building connection_bench (release preset, -j $JOBS)"
  (cd "$root" && cmake --preset release >/dev/null &&
     cmake --build --preset release --target connection_bench -j "$JOBS" >&2)
  log "building hiredis_bench (gcc -O2)"
  mkdir -p "$bin"
  gcc -O2 -std=c11 -Wall -Wextra -o "$bin/hiredis_bench" "$here/peers/hiredis_bench.c" -lhiredis
fi
[[ -x $bin/connection_bench && -x $bin/hiredis_bench ]] || { log "binaries missing in $bin"; exit 1; }

# ---- cores, and a throwaway redis-server on a free loopback port ----------------------------
bench_pin
bench_start_server
# redis-benchmark -t get asks for this literal key: give it the same 3-byte value as the others.
redis-cli -p "$port" set 'key:__rand_int__' abc >/dev/null

# Other engineers' jobs on a shared machine skew the figures: at each phase boundary, count the
# processes other than ours using >= 30% CPU, and report the worst count under the table.
others_busy=0
check_quiet() {
  local n
  n=$(ps -eo pcpu=,comm= | awk '$1 >= 30 && $2 !~ /^(redis-server|redis-benchmark|connection_bench|hiredis_bench|ps|awk)$/' | wc -l)
  ((n > others_busy)) && others_busy=$n
  ((n == 0)) || log "warning: $n other busy process(es): the figures will be noisy"
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
raw="$tmp/raw.txt"
: >"$raw"
check_quiet

# ---- redis-benchmark: REPEAT runs each, median and spread -----------------------------------
# Prints "workload=NAME unit=ops ops_per_s=MED min=MIN max=MAX runs=..." like the other two.
rb_rps() {  # pipeline requests -> GET/s of one run
  local rps
  rps=$("${client_pin[@]}" redis-benchmark -p "$port" -c 1 -P "$1" -t get -n "$2" --csv |
          awk -F'"' '$2 == "GET" { print $4 }')
  [[ -n $rps ]] || { log "redis-benchmark printed no GET line"; exit 1; }
  echo "$rps"
}
redis_benchmark() {  # name pipeline [requests]
  local name=$1 pipeline=$2 n=${3:-} rates=()
  if [[ -z $n ]]; then  # calibrate: one run of about DURATION seconds
    n=$(awk -v r="$(rb_rps "$pipeline" $((5000 * pipeline)))" -v d="$DURATION" \
          'BEGIN { n = int(r * d); print (n < 10000 ? 10000 : n) }')
  fi
  log "redis-benchmark -c 1 -P $pipeline: $REPEAT x $n GET"
  for _ in $(seq 1 "$REPEAT"); do rates+=("$(rb_rps "$pipeline" "$n")"); done
  printf '%s\n' "${rates[@]}" | sort -g | awk -v name="$name" -v runs="$(IFS=,; echo "${rates[*]}")" '
    { v[NR] = $1 }
    END {
      med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "workload=%s unit=ops ops_per_s=%.0f min=%.0f max=%.0f runs=%s\n", name, med, v[1], v[NR], runs
    }'
}

redis_benchmark rb_c1_p1 1 "$RB_N_P1" | tee -a "$raw" >&2
check_quiet
redis_benchmark rb_c1_p16 16 "$RB_N_P16" | tee -a "$raw" >&2
check_quiet

# Sequential round trips are what a noisy loopback varies most over a minute: rtt_1 and hiredis
# seq_get run in interleaved pairs (one run each per round, the order alternating), so that both
# see the same conditions. Every other workload runs REPEAT times in one process.
log "rtt_1 / seq_get: $REPEAT interleaved rounds"
one=(--port "$port" --seconds "$DURATION" --repeat 1 --warmup "$WARMUP")
pairs="$tmp/pairs.txt"
: >"$pairs"
run_hiredis_seq() {
  "${client_pin[@]}" "$bin/hiredis_bench" "${one[@]}" --only seq_get | sed 's/^workload=/workload=hiredis:/'
}
run_rediskit_rtt() {
  "${client_pin[@]}" "$bin/connection_bench" "${one[@]}" --only rtt_1 | grep '^workload=' |
    sed 's/^workload=/workload=rediskit:/'
}
for round in $(seq 1 "$REPEAT"); do
  if ((round % 2)); then run_hiredis_seq; run_rediskit_rtt; else run_rediskit_rtt; run_hiredis_seq; fi
done | tee -a "$pairs" >&2
# Median (and min-max) of the runs' ops/s, median of their p50 and p99.
awk '
  function median(a, n,    i, j, t) {
    for (i = 2; i <= n; ++i) for (j = i; j > 1 && a[j - 1] > a[j]; --j) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    split($1, w, "="); name = w[2]
    if (!(name in n)) order[++names] = name
    k = ++n[name]
    for (i = 2; i <= NF; ++i) {
      split($i, kv, "=")
      if (kv[1] == "ops_per_s") rate[name, k] = kv[2]
      if (kv[1] == "p50_us") p50[name, k] = kv[2]
      if (kv[1] == "p99_us") p99[name, k] = kv[2]
      if (kv[1] == "unit") unit[name] = kv[2]
    }
  }
  END {
    for (q = 1; q <= names; ++q) {
      name = order[q]; m = n[name]; runs = ""
      for (k = 1; k <= m; ++k) { r[k] = rate[name, k]; a[k] = p50[name, k]; b[k] = p99[name, k]; runs = runs (k > 1 ? "," : "") r[k] }
      med = median(r, m)
      printf "workload=%s unit=%s ops_per_s=%.0f min=%.0f max=%.0f p50_us=%.1f p99_us=%.1f runs=%s\n",
        name, unit[name], med, r[1], r[m], median(a, m), median(b, m), runs
    }
  }' "$pairs" | tee -a "$raw" >&2
check_quiet

args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP")
log "hiredis_bench ${args[*]}"
"${client_pin[@]}" "$bin/hiredis_bench" "${args[@]}" --only pipelined_100,batch_100_hgetall |
  sed 's/^workload=/workload=hiredis:/' | tee -a "$raw" >&2
check_quiet
log "connection_bench ${args[*]}"
"${client_pin[@]}" "$bin/connection_bench" "${args[@]}" \
  --only callers_1,callers_16,callers_64,callers_256,batch_100_hgetall,batch_100_hgetall_maps |
  grep '^workload=' | sed 's/^workload=/workload=rediskit:/' | tee -a "$raw" >&2

check_quiet
[[ -n ${RAW:-} ]] && cp "$raw" "$RAW"

# ---- the table ------------------------------------------------------------------------------
awk -v repeat="$REPEAT" -v duration="$DURATION" -v pinning="$pinning" \
    -v load_before="$load_before" -v others_busy="$others_busy" \
    -v cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    -v cores="$(nproc)" '
  {
    split($1, w, "="); name = w[2]
    for (i = 2; i <= NF; ++i) { split($i, kv, "="); f[name, kv[1]] = kv[2] }
    seen[name] = 1
  }
  function has(n) { return (n in seen) }
  function cell(n,    s) {
    if (!has(n)) return "-"
    s = sprintf("%.0f (%.0f–%.0f)", f[n, "ops_per_s"], f[n, "min"], f[n, "max"])
    if ((n, "pipelining") in f) s = s sprintf(", pf %.1f", f[n, "pipelining"])
    return s
  }
  function bcell(n) {  # batches: ms per batch, spread in ms
    if (!has(n)) return "-"
    return sprintf("%.3f ms (%.3f–%.3f)", 1000 / f[n, "ops_per_s"], 1000 / f[n, "max"], 1000 / f[n, "min"])
  }
  function ratio(a, b) { return (has(a) && has(b) && f[b, "ops_per_s"] > 0) ? f[a, "ops_per_s"] / f[b, "ops_per_s"] : -1 }
  function goal(r, want) {
    if (r < 0) return "n/a"
    return sprintf("%.2fx %s (goal ≥ %.1fx)", r, r >= want ? "✅" : "❌", want)
  }
  END {
    printf "| workload | rediskit | hiredis | redis-benchmark | ratio |\n"
    printf "|---|---|---|---|---|\n"
    printf "| rtt_1: sequential GET, ops/s | %s | %s (seq_get) | %s (-c1 -P1) | %s vs hiredis seq_get |\n",
      cell("rediskit:rtt_1"), cell("hiredis:seq_get"), cell("rb_c1_p1"),
      goal(ratio("rediskit:rtt_1", "hiredis:seq_get"), 0.9)
    printf "| rtt_1 latency p50 / p99 | %.1f / %.1f µs | %.1f / %.1f µs | - | |\n",
      f["rediskit:rtt_1", "p50_us"], f["rediskit:rtt_1", "p99_us"],
      f["hiredis:seq_get", "p50_us"], f["hiredis:seq_get", "p99_us"]
    printf "| callers_1, ops/s | %s | - | - | |\n", cell("rediskit:callers_1")
    printf "| callers_16, ops/s | %s | - | %s (-c1 -P16) | %.2fx vs -P16 (ref.) |\n",
      cell("rediskit:callers_16"), cell("rb_c1_p16"), ratio("rediskit:callers_16", "rb_c1_p16")
    printf "| callers_64, ops/s | %s | - | %s (-c1 -P16) | %s vs redis-benchmark -c1 -P16 |\n",
      cell("rediskit:callers_64"), cell("rb_c1_p16"),
      goal(ratio("rediskit:callers_64", "rb_c1_p16"), 1.0)
    printf "| callers_256, ops/s | %s | %s (pipelined_100) | - | %s vs hiredis pipelined_100 |\n",
      cell("rediskit:callers_256"), cell("hiredis:pipelined_100"),
      goal(ratio("rediskit:callers_256", "hiredis:pipelined_100"), 0.7)
    printf "| batch_100_hgetall → Tree | %s | %s | - | %.2fx hiredis speed (reference) |\n",
      bcell("rediskit:batch_100_hgetall"), bcell("hiredis:batch_100_hgetall"),
      ratio("rediskit:batch_100_hgetall", "hiredis:batch_100_hgetall")
    printf "| batch_100_hgetall → 100 unordered_map | %s | - | - | %.2fx hiredis speed (reference) |\n",
      bcell("rediskit:batch_100_hgetall_maps"),
      ratio("rediskit:batch_100_hgetall_maps", "hiredis:batch_100_hgetall")
    printf "\nMedian of %d runs (min–max); rediskit and hiredis runs last %s s (rtt_1 and seq_get: interleaved, one run each per round; latency: median of the runs\x27 p50 / p99). pf: pipelining factor (requests_sent / writes). ", repeat, duration
    printf "%d cores (%s), %s. Load average before the run: %s; other busy processes seen during it: %d%s.\n",
      cores, cpu, pinning, load_before, others_busy, others_busy ? " (NOT a quiet run)" : ""
  }' "$raw"
