#!/usr/bin/env bash
# CacheService benchmarks: JSON profiles through CacheService on MemoryBackend and RedisBackend
# (a throwaway redis-server), as cache_bench does.
#
#   bash benchmarks/run_cache.sh
#
# Environment (all optional): REPEAT=5 runs per workload (median, min-max), DURATION=1 second
# per run, JOBS=1 (build parallelism), SKIP_BUILD=1. Server on core 0, client on core 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-1}
JOBS=${JOBS:-1}
BENCH_NAME=run_cache
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux

bench_build cache_bench

bench_pin
bench_start_server
"${client_pin[@]}" "$bin/cache_bench" --port "$port" --seconds "$DURATION" --repeat "$REPEAT"
echo
echo "Median of $REPEAT runs of $DURATION s (min-max); $(nproc) cores" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $pinning;" \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
