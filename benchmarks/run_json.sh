#!/usr/bin/env bash
# JsonCodec's decoding (json_bench): seed 004's message, a directory profile and seed 001's user
# profile decoded into their structs by JsonCodec (straight from the text), by its document path
# (through a boost::json::value), and by Boost.JSON's own value_to, in one process. No server.
#
#   bash benchmarks/run_json.sh
#
# Environment (all optional): REPEAT=5 runs per way (median, min-max), DURATION=1 second per run,
# JOBS=1 (build parallelism), SKIP_BUILD=1. Pinned on core 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-1}
BENCH_NAME=run_json
source "$here/lib.sh"

bench_need cmake ninja-build g++ ccache libboost1.81-dev libboost-json1.81-dev libssl-dev \
  util-linux
bench_build json_bench
bench_pin

out=$(mktemp)
"${client_pin[@]}" "$bin/json_bench" --seconds "$DURATION" --repeat "$REPEAT" | tee "$out"
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
figure() { grep "system=$1 workload=$2 " "$out" | field ns_per_decode; }
echo
echo "| value | JsonCodec (direct) ns | JsonCodec's document path ns | Boost.JSON value_to ns |"
echo "|---|---:|---:|---:|"
for w in chat_message directory_profile user_profile; do
  echo "| $w | $(figure rediskit-direct "$w") | $(figure rediskit-document "$w")" \
    "| $(figure boost-value_to "$w") |"
done
echo
echo "Nanoseconds per decode (into a fresh struct, compared with the original), median of" \
  "$REPEAT runs of $DURATION s; $(nproc) cores, $pinning;" \
  "load average: $(cut -d' ' -f1-3 /proc/loadavg)."
rm -f "$out"
