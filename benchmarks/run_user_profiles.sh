#!/usr/bin/env bash
# Seed 001 at scale (issue 14), on one throwaway redis-server, each system in the same run:
# user_profiles_bench (UserCache batch get of 100, the near cache against a round trip and its
# invalidation delay, a 300 000-profile pre-warm, the stream consumer over 100 000 events) and
# its peers: node-redis 5 and ioredis pipelining the same 100 HGETALL (peers/node_bench.mjs
# batch_100_hgetall), and seed 001's consumer on ioredis (peers/user_stream_consumer.mjs).
#
#   bash benchmarks/run_user_profiles.sh
#
# Environment (all optional): EVENTS=100000, JOBS=1 (build parallelism), SKIP_BUILD=1,
# SKIP_NPM=1 (use benchmarks/peers/node_modules as it is). The server runs on core 0 and every
# client on core 1 (taskset). Needs Node.js >= 20 with npm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EVENTS=${EVENTS:-100000}
BENCH_NAME=run_user_profiles
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux
bench_npm_peers
bench_build user_profiles_bench
bench_pin
bench_start_server

out=$(mktemp)
"${client_pin[@]}" "$bin/user_profiles_bench" "$port" 0 | tee -a "$out"
for client in node-redis5 ioredis; do
  "${client_pin[@]}" node "$here/peers/node_bench.mjs" --client "$client" --port "$port" \
    --only batch_100_hgetall --repeat 5 | sed "s/^/$client: /" | tee -a "$out"
done
"${client_pin[@]}" node "$here/peers/user_stream_consumer.mjs" --port "$port" \
  --events "$EVENTS" | tee -a "$out"
echo
echo "$(nproc) cores, $pinning; redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "node $(node --version); load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
