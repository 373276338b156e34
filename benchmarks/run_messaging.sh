#!/usr/bin/env bash
# MessageStore (issue 17, seed 004) on one throwaway redis-server: messaging_bench on RedisBackend
# and MemoryBackend: async_store_message from 64 callers until 1 000 000 messages are stored in
# 10 000 conversations (messages/s, p50 and p99 per store), a page of 50 messages decoded into
# ChatMessage structs (p50 and p99 per page), and Redis memory per message (INFO used_memory),
# then one markdown table with MemoryBackend beside RedisBackend. There is no peer for these
# workloads.
#
#   bash benchmarks/run_messaging.sh
#
# Environment (all optional): REPEAT=5 timed page runs (median reported), DURATION=2 seconds per
# page run, WARMUP=1, CALLERS=64, CONVERSATIONS=10000, MESSAGES=1000000, BACKENDS=redis,memory,
# JOBS=1 (build parallelism), SKIP_BUILD=1. The server runs on core 0 and the client on core 1
# (taskset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
CALLERS=${CALLERS:-64}
CONVERSATIONS=${CONVERSATIONS:-10000}
MESSAGES=${MESSAGES:-1000000}
BACKENDS=${BACKENDS:-redis,memory}
BENCH_NAME=run_messaging
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
bench_build messaging_bench
bench_pin
bench_start_server

args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP"
      --callers "$CALLERS" --conversations "$CONVERSATIONS" --messages "$MESSAGES"
      --backends "$BACKENDS")
out=$(mktemp)
"${client_pin[@]}" "$bin/messaging_bench" "${args[@]}" | tee -a "$out"

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
figure() { grep "system=$1 workload=$2 " "$out" | field "$3"; }
echo
echo "| workload | RedisBackend ops/s | p50 µs | p99 µs | MemoryBackend ops/s | p50 µs | p99 µs |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for w in "store_c$CALLERS" page50; do
  echo "| $w | $(figure rediskit-redis "$w" ops_per_s) | $(figure rediskit-redis "$w" p50_us)" \
    "| $(figure rediskit-redis "$w" p99_us) | $(figure rediskit-memory "$w" ops_per_s)" \
    "| $(figure rediskit-memory "$w" p50_us) | $(figure rediskit-memory "$w" p99_us) |"
done
echo
echo "store: messages/s from $CALLERS callers until $MESSAGES messages are stored in" \
  "$CONVERSATIONS conversations (the first $WARMUP s untimed); page50: pages of 50 decoded" \
  "messages per second from one caller, median of $REPEAT runs." \
  "Redis memory per message: $(figure rediskit-redis memory bytes_per_message) bytes" \
  "(INFO used_memory). $(nproc) cores, $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
