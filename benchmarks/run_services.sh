#!/usr/bin/env bash
# VoteService and NotificationService (issue 18) on one throwaway redis-server: services_bench
# on RedisBackend and MemoryBackend, a vote from 64 callers (votes/s, p50 and p99 per vote) and
# a notification fan-out to 1 000 subscribed users (one async_notify per user at once, from the
# first call to the last handler: p50 and p99 over the rounds), then one markdown table with
# MemoryBackend beside RedisBackend. There is no peer for these workloads.
#
#   bash benchmarks/run_services.sh
#
# Environment (all optional): REPEAT=5 timed runs per workload (median reported), DURATION=2
# seconds per vote run, WARMUP=1, CALLERS=64, SUGGESTIONS=1000, USERS=10000 (voters),
# FANOUT_USERS=1000, ROUNDS=100 fan-out rounds per timed run, JOBS=1 (build parallelism),
# SKIP_BUILD=1. The server runs on core 0 and the client on core 1 (taskset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
CALLERS=${CALLERS:-64}
SUGGESTIONS=${SUGGESTIONS:-1000}
USERS=${USERS:-10000}
FANOUT_USERS=${FANOUT_USERS:-1000}
ROUNDS=${ROUNDS:-100}
BENCH_NAME=run_services
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
bench_build services_bench
bench_pin
bench_start_server

args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP"
      --callers "$CALLERS" --suggestions "$SUGGESTIONS" --users "$USERS"
      --fanout-users "$FANOUT_USERS" --rounds "$ROUNDS")
out=$(mktemp)
"${client_pin[@]}" "$bin/services_bench" "${args[@]}" | tee -a "$out"

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
figure() { grep "system=$1 workload=$2 " "$out" | field "$3"; }
echo
echo "| workload | RedisBackend ops/s | p50 µs | p99 µs | MemoryBackend ops/s | p50 µs |" \
  "p99 µs | memory / redis (ops/s) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for w in "vote_c$CALLERS" "fanout_$FANOUT_USERS"; do
  r=$(figure rediskit-redis "$w" ops_per_s)
  m=$(figure rediskit-memory "$w" ops_per_s)
  [[ -n $r && -n $m ]] || continue
  ratio=$(awk -v a="$m" -v b="$r" 'BEGIN { printf "%.1fx", a / b }')
  echo "| $w | $r | $(figure rediskit-redis "$w" p50_us) | $(figure rediskit-redis "$w" p99_us)" \
    "| $m | $(figure rediskit-memory "$w" p50_us) | $(figure rediskit-memory "$w" p99_us)" \
    "| $ratio |"
done
echo
echo "ops/s: votes/s from $CALLERS callers; fan-out: notifications delivered/s over $ROUNDS" \
  "rounds per run, p50/p99 of a whole round (first async_notify to last handler)." \
  "Subscribing $FANOUT_USERS users: $(figure rediskit-redis "subscribe_$FANOUT_USERS" seconds) s" \
  "(Redis), $(figure rediskit-memory "subscribe_$FANOUT_USERS" seconds) s (memory)." \
  "Median of $REPEAT runs; $(nproc) cores, $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
