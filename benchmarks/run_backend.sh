#!/usr/bin/env bash
# Backend benchmarks: the same typed commands through MemoryBackend and RedisBackend (a
# throwaway redis-server), as backend_bench does; prints its markdown table.
#
#   bash benchmarks/run_backend.sh
#
# Environment (all optional): REPEAT=5 runs per workload (median, min-max), DURATION=1 second
# per run, WARMUP=0.5, JOBS=1 (build parallelism), SKIP_BUILD=1, ONLY=get_1,get_b100,...
# The server runs on core 0 and the client on core 1 (taskset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-1}
WARMUP=${WARMUP:-0.5}
JOBS=${JOBS:-1}
BENCH_NAME=run_backend
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux

bin="$root/build/release/benchmarks"
if [[ -z ${SKIP_BUILD:-} ]]; then
  bench_log "building backend_bench (release preset, -j $JOBS)"
  (cd "$root" && cmake --preset release >/dev/null &&
     cmake --build --preset release --target backend_bench -j "$JOBS" >&2)
fi
[[ -x $bin/backend_bench ]] || { bench_log "backend_bench missing in $bin"; exit 1; }

bench_pin
bench_start_server
args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP")
[[ -n ${ONLY:-} ]] && args+=(--only "$ONLY")
"${client_pin[@]}" "$bin/backend_bench" "${args[@]}"
echo
echo "Median of $REPEAT runs of $DURATION s (min-max); $(nproc) cores" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $pinning;" \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
