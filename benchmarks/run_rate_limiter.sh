#!/usr/bin/env bash
# RateLimiter against rate-limiter-flexible on ioredis, on one throwaway redis-server:
# rate_limiter_bench (rediskit on RedisBackend and MemoryBackend, GCRA and fixed window) and
# peers/rate_limiter_bench.mjs (RateLimiterRedis, a fixed window), 64 callers and 1 caller
# each, then one markdown table with rediskit's ratio to rate-limiter-flexible.
#
#   bash benchmarks/run_rate_limiter.sh
#
# Environment (all optional): REPEAT=5 timed runs per workload (median reported), DURATION=2
# seconds per run, WARMUP=1, CALLERS=64, USERS=10000, JOBS=1 (build parallelism), SKIP_BUILD=1,
# SKIP_NPM=1 (use benchmarks/peers/node_modules as it is), PEER_DIR=dir (where
# node_modules with ioredis and rate-limiter-flexible is, default benchmarks/peers). The server
# runs on core 0 and every client on core 1 (taskset). Needs Node.js >= 20 with npm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
CALLERS=${CALLERS:-64}
USERS=${USERS:-10000}
PEER_DIR=${PEER_DIR:-$here/peers}
BENCH_NAME=run_rate_limiter
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
if [[ $PEER_DIR == "$here/peers" ]]; then bench_npm_peers; else bench_need_node; fi
bench_build rate_limiter_bench
bench_pin
bench_start_server

args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP"
      --callers "$CALLERS" --users "$USERS")
out=$(mktemp)
"${client_pin[@]}" "$bin/rate_limiter_bench" "${args[@]}" | tee -a "$out"
redis-cli -p "$port" flushall >/dev/null
peer=$PEER_DIR/rate_limiter_bench.mjs
[[ -f $peer ]] || cp "$here/peers/rate_limiter_bench.mjs" "$peer"
"${client_pin[@]}" node "$peer" "${args[@]}" | tee -a "$out"

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
figure() { grep "system=$1 algo=$2 workload=$3 " "$out" | field "$4"; }
rl64=$(figure rlflx-ioredis fixed "callers_$CALLERS" ops_per_s)
rl1=$(figure rlflx-ioredis fixed rtt_1 p50_us)
echo
echo "| system | algorithm | checks/s, $CALLERS callers | x rate-limiter-flexible |" \
  "1 caller p50 µs | p99 µs |"
echo "|---|---|---:|---:|---:|---:|"
while read -r sys algo; do
  c=$(figure "$sys" "$algo" "callers_$CALLERS" ops_per_s)
  [[ -n $c ]] || continue
  ratio=$(awk -v a="$c" -v b="$rl64" 'BEGIN { printf "%.2f", a / b }')
  echo "| $sys | $algo | $c | $ratio | $(figure "$sys" "$algo" rtt_1 p50_us) |" \
    "$(figure "$sys" "$algo" rtt_1 p99_us) |"
done <<'EOF'
rediskit-redis gcra
rediskit-redis fixed
rlflx-ioredis fixed
rediskit-memory gcra
rediskit-memory fixed
EOF
echo
echo "rate-limiter-flexible 1-caller p50: $rl1 µs. $(nproc) cores, $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
