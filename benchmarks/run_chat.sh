#!/usr/bin/env bash
# Chat services benchmark: OnlineUserManager, RoomManager and UnreadMessageManager at seed 000's
# scale (300 000 users online, 30 000 rooms of 10 members, unread fan-out to 10 participants)
# on MemoryBackend and RedisBackend (a throwaway redis-server), as chat_bench does; prints its
# markdown tables. A full run takes a few minutes.
#
#   bash benchmarks/run_chat.sh
#
# Environment (all optional): CONCURRENCY=128 operations in flight, SAMPLES=1000 latency calls
# per point, USERS=300000, ROOMS=30000, READS=100000, BACKENDS=memory,redis, JOBS=1 (build
# parallelism), SKIP_BUILD=1. The server runs on core 0 and the client on core 1 (taskset).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONCURRENCY=${CONCURRENCY:-128}
SAMPLES=${SAMPLES:-1000}
USERS=${USERS:-300000}
ROOMS=${ROOMS:-30000}
READS=${READS:-100000}
BACKENDS=${BACKENDS:-memory,redis}
JOBS=${JOBS:-1}
BENCH_NAME=run_chat
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev util-linux

bench_build chat_bench

bench_pin
bench_start_server
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
"${client_pin[@]}" "$bin/chat_bench" --port "$port" --users "$USERS" --rooms "$ROOMS" \
  --concurrency "$CONCURRENCY" --samples "$SAMPLES" --reads "$READS" --backends "$BACKENDS"
echo
echo "One run, $(($(date +%s) - start)) s; $(nproc) cores" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/');" \
  "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)."
