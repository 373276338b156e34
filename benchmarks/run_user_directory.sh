#!/usr/bin/env bash
# UserDirectory (issue 17) on one throwaway redis-server: user_directory_bench on RedisBackend and
# MemoryBackend with 100 000 users (load from 64 callers, then a mix of searches from one caller:
# p50 / p99 per search, and memory per indexed user from INFO used_memory), then one markdown
# table with MemoryBackend beside RedisBackend. The issue's goals: search p99 <= 2 ms on
# RedisBackend, <= 0.1 ms on MemoryBackend. There is no peer for this workload (RediSearch is a
# module; the point is plain Redis 7).
#
#   bash benchmarks/run_user_directory.sh
#
# Environment (all optional): USERS=100000, QUERIES=5000 searches per timed run, REPEAT=3 runs,
# CALLERS=64 (load), LIMIT=20 results per search, CAP=50 (candidates_per_term), JOBS=1 (build
# parallelism), BUILD_DIR=build/release (the release preset's binary folder), SKIP_BUILD=1.
# The server runs on core 0 and the client on core 1 (taskset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
USERS=${USERS:-100000}
QUERIES=${QUERIES:-5000}
REPEAT=${REPEAT:-3}
CALLERS=${CALLERS:-64}
LIMIT=${LIMIT:-20}
CAP=${CAP:-50}
BUILD_DIR=${BUILD_DIR:-$root/build/release}
BENCH_NAME=run_user_directory
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
if [[ -z ${SKIP_BUILD:-} ]]; then
  bench_log "building user_directory_bench (release preset in $BUILD_DIR, -j ${JOBS:-1})"
  (cd "$root" && cmake --preset release -B "$BUILD_DIR" >/dev/null &&
     cmake --build "$BUILD_DIR" --target user_directory_bench -j "${JOBS:-1}" >&2)
fi
bin="$BUILD_DIR/benchmarks"
[[ -x $bin/user_directory_bench ]] || { bench_log "user_directory_bench missing in $bin"; exit 1; }
bench_pin
bench_start_server

out=$(mktemp)
"${client_pin[@]}" "$bin/user_directory_bench" --port "$port" --users "$USERS" \
  --queries "$QUERIES" --repeat "$REPEAT" --callers "$CALLERS" --limit "$LIMIT" --cap "$CAP" |
  tee -a "$out"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }  # " name=": not worst_p99_us
figure() { grep "system=$1 workload=$2 " "$out" | field "$3"; }
echo
echo "| workload | RedisBackend | MemoryBackend |"
echo "|---|---:|---:|"
echo "| load $USERS users, $CALLERS callers (users/s) | $(figure rediskit-redis "load_$USERS" ops_per_s)" \
  "| $(figure rediskit-memory "load_$USERS" ops_per_s) |"
for f in p50_us p99_us max_us; do
  echo "| search, one caller: $f | $(figure rediskit-redis "search_$USERS" "$f")" \
    "| $(figure rediskit-memory "search_$USERS" "$f") |"
done
echo "| search: worst query by p99 | $(figure rediskit-redis "search_$USERS" worst_query)" \
  "$(figure rediskit-redis "search_$USERS" worst_p99_us) µs" \
  "| $(figure rediskit-memory "search_$USERS" worst_query)" \
  "$(figure rediskit-memory "search_$USERS" worst_p99_us) µs |"
echo "| memory per indexed user (INFO used_memory) | $(figure rediskit-redis "memory_$USERS" bytes_per_user) B" \
  "| - |"
echo "| index entries per user | $(figure rediskit-redis "memory_$USERS" index_entries_per_user) | - |"
echo
echo "Searches: a mix of 20 queries (prefixes of 2-3 letters, exact and accented names, 2 and 3" \
  "terms, a term matching nothing), limit $LIMIT, candidates_per_term $CAP, $REPEAT x $QUERIES" \
  "searches per backend after one warm-up pass. $(nproc) cores, $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
