#!/usr/bin/env bash
# ClusterBackend against RedisBackend: the same typed commands through RedisBackend on a plain
# throwaway redis-server, and through ClusterBackend on a one-master and a three-master
# throwaway cluster (cluster-enabled redis-servers whose slots are assigned here with CLUSTER
# ADDSLOTSRANGE and CLUSTER MEET); prints backend_bench's table with cluster / redis ratios.
#
#   bash benchmarks/run_cluster.sh
#
# Every server runs on core 0 and the client on core 1 (taskset), so the three masters share
# one core: this measures the cost of the cluster client (slot routing, one pipeline per
# master), not the scale-out that more cores would give (see benchmarks/README.md, Cluster).
# Environment (all optional): REPEAT=5 runs per workload, DURATION=1 second per run,
# WARMUP=0.5, JOBS=1, SKIP_BUILD=1, ONLY=get_1,get_c64,get_c256,get_b100,hgetall_b100.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-1}
WARMUP=${WARMUP:-0.5}
ONLY=${ONLY:-get_1,get_c64,get_c256,get_b100,hgetall_b100}
BENCH_NAME=run_cluster
source "$here/lib.sh"

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev util-linux
bench_build backend_bench
bench_pin
bench_start_server  # the plain server: $port, stopped on exit with $tmp

cluster_pids=()
stop_clusters() {
  local p
  for p in "${cluster_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  bench_cleanup
}
trap stop_clusters EXIT

# start_node DIR: a cluster-enabled redis-server; sets node_port and node_bus.
start_node() {
  mkdir -p "$1"
  node_port=$(free_port)
  node_bus=$(free_port)
  "${server_pin[@]}" redis-server --port "$node_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$1" --logfile "$1/redis.log" --daemonize no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$node_bus" &
  cluster_pids+=($!)
  local _
  for _ in $(seq 1 50); do
    redis-cli -p "$node_port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  bench_log "a cluster node did not start: $(tail -3 "$1/redis.log")"
  exit 1
}

wait_cluster_ok() {  # wait_cluster_ok PORT KNOWN_NODES
  local _
  for _ in $(seq 1 200); do
    local info
    info=$(redis-cli -p "$1" cluster info)
    [[ $info == *cluster_state:ok* && $info == *"cluster_known_nodes:$2"* ]] && return 0
    sleep 0.1
  done
  bench_log "cluster on port $1 not ok: $(redis-cli -p "$1" cluster info | head -3)"
  exit 1
}

# One master with every slot.
start_node "$tmp/c1"
one=$node_port
redis-cli -p "$one" cluster addslotsrange 0 16383 >/dev/null
wait_cluster_ok "$one" 1

# Three masters.
ports=() buses=()
for i in 0 1 2; do
  start_node "$tmp/c3-$i"
  ports+=("$node_port") buses+=("$node_bus")
done
redis-cli -p "${ports[0]}" cluster addslotsrange 0 5460 >/dev/null
redis-cli -p "${ports[1]}" cluster addslotsrange 5461 10922 >/dev/null
redis-cli -p "${ports[2]}" cluster addslotsrange 10923 16383 >/dev/null
for i in 1 2; do
  redis-cli -p "${ports[$i]}" cluster meet 127.0.0.1 "${ports[0]}" "${buses[0]}" >/dev/null
done
for p in "${ports[@]}"; do wait_cluster_ok "$p" 3; done
bench_log "clusters ready: one master on $one, three masters on ${ports[*]}"

"${client_pin[@]}" "$bin/backend_bench" --port "$port" --backends redis,cluster \
  --cluster-port "$one" --cluster-port "${ports[0]}" --only "$ONLY" \
  --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP"
echo
echo "Median of $REPEAT runs of $DURATION s (min-max); $(nproc) cores" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $pinning" \
  "(the three masters share core 0); load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
