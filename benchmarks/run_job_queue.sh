#!/usr/bin/env bash
# JobQueue and Worker against BullMQ (issue 15), on one throwaway redis-server, in one run:
# job_queue_bench (rediskit on RedisBackend and on MemoryBackend) and peers/bullmq_bench.mjs
# (BullMQ 6.7.6 on ioredis 6), the same workloads (bulk add, processing at concurrency 1, 10
# and 100, add -> completed latency at a steady 200 jobs/s), then one markdown table with
# rediskit's ratio to BullMQ and the issue's goals.
#
#   bash benchmarks/run_job_queue.sh
#
# Environment (all optional): REPEAT=3 runs per workload (median reported; latency: percentiles
# over every run's jobs), JOBS_N=20000 jobs per throughput run, BULK=1000 jobs per bulk add,
# LATENCY_JOBS=2000 jobs per latency run (10 s each at 200 jobs/s), JOBS=1 (build parallelism),
# SKIP_BUILD=1, SKIP_NPM=1 (use benchmarks/peers/node_modules as it is). Order: RedisBackend,
# BullMQ, MemoryBackend (the two that share the server next to each other in time). The server
# runs on core 0 and every client on core 1 (taskset). Needs Node.js >= 20 with npm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-3}
JOBS_N=${JOBS_N:-20000}
BULK=${BULK:-1000}
LATENCY_JOBS=${LATENCY_JOBS:-2000}
BENCH_NAME=run_job_queue
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
bench_npm_peers
bench_build job_queue_bench
bench_pin
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start_server

args=(--port "$port" --repeat "$REPEAT" --jobs "$JOBS_N" --bulk "$BULK"
      --latency-jobs "$LATENCY_JOBS")
out=$(mktemp)
"${client_pin[@]}" "$bin/job_queue_bench" "${args[@]}" --backends redis | tee -a "$out"
redis-cli -p "$port" flushall >/dev/null
"${client_pin[@]}" node "$here/peers/bullmq_bench.mjs" "${args[@]}" | tee -a "$out"
redis-cli -p "$port" flushall >/dev/null
"${client_pin[@]}" "$bin/job_queue_bench" "${args[@]}" --backends memory | tee -a "$out"

echo
echo "| workload | rediskit RedisBackend | rediskit MemoryBackend | BullMQ 6.7.6 |" \
  "RedisBackend / BullMQ | goal | MemoryBackend / RedisBackend | goal |"
echo "|---|---:|---:|---:|---:|---|---:|---|"
awk -v bulk="$BULK" '
  function field(line, name,   m) {
    return match(line, " " name "=[^ ]*") ? substr(line, RSTART + length(name) + 2, RLENGTH - length(name) - 2) : ""
  }
  /^system=/ {
    sys = field(" " $0, "system"); w = field($0, "workload")
    if (w == "latency_200") { p50[sys, w] = field($0, "p50_ms"); p99[sys, w] = field($0, "p99_ms") }
    else { rate[sys, w] = field($0, "jobs_per_s"); lo[sys, w] = field($0, "min"); hi[sys, w] = field($0, "max") }
  }
  function cell(sys, w) {
    return rate[sys, w] == "" ? "–" : sprintf("%d jobs/s (%d–%d)", rate[sys, w], lo[sys, w], hi[sys, w])
  }
  function lat(sys) {
    return p50[sys, "latency_200"] == "" ? "–" : sprintf("p50 %.3f ms, p99 %.3f ms", p50[sys, "latency_200"], p99[sys, "latency_200"])
  }
  function verdict(ok) { return ok ? "met" : "**not met**" }
  END {
    n = split("bulk_add process_c1 process_c10 process_c100", ws, " ")
    label["bulk_add"] = "bulk add (" bulk " per addBulk)"
    label["process_c1"] = "processing, concurrency 1"
    label["process_c10"] = "processing, concurrency 10"
    label["process_c100"] = "processing, concurrency 100"
    for (i = 1; i <= n; ++i) {
      w = ws[i]; r = rate["rediskit-redis", w]; b = rate["bullmq", w]; m = rate["rediskit-memory", w]
      rb = (r != "" && b > 0) ? sprintf("%.2fx", r / b) : "–"
      mr = (m != "" && r > 0) ? sprintf("%.1fx", m / r) : "–"
      printf "| %s | %s | %s | %s | %s | ≥ 3x BullMQ: %s | %s | ≥ 10x: %s |\n", label[w],
             cell("rediskit-redis", w), cell("rediskit-memory", w), cell("bullmq", w), rb,
             verdict(b > 0 && r / b >= 3), mr, verdict(r > 0 && m / r >= 10)
    }
    w = "latency_200"; r50 = p50["rediskit-redis", w]; r99 = p99["rediskit-redis", w]
    b50 = p50["bullmq", w]; b99 = p99["bullmq", w]; m50 = p50["rediskit-memory", w]
    printf "| add → completed at 200 jobs/s (concurrency 10) | %s | %s | %s | %s | p50 ≤ 0.2 ms, p99 ≤ 1 ms: %s | %s | – |\n",
           lat("rediskit-redis"), lat("rediskit-memory"), lat("bullmq"),
           (r50 > 0 && r99 > 0 && b50 != "") ? sprintf("%.1fx lower p50, %.1fx lower p99", b50 / r50, b99 / r99) : "–",
           verdict(r50 != "" && r50 <= 0.2 && r99 <= 1),
           (m50 > 0 && r50 != "") ? sprintf("%.1fx lower p50", r50 / m50) : "–"
  }' "$out"
echo
echo "Throughput: median of $REPEAT runs of $JOBS_N jobs (min–max); latency: percentiles over" \
  "$REPEAT runs of $LATENCY_JOBS jobs. $(nproc) cores, $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'); node $(node --version);" \
  "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
