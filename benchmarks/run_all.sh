#!/usr/bin/env bash
# rediskit side by side with its peers: one throwaway redis-server, the same workloads through
# rediskit (Connection, RedisBackend, MemoryBackend), redis-benchmark, hiredis, ioredis (with and
# without enableAutoPipelining) and node-redis 5 / 6, in one run. Prints one markdown table:
# every system's figure per workload and rediskit's ratio to each, with the issue's goals;
# then the services' own tables (run_rate_limiter.sh: RateLimiter against rate-limiter-flexible;
# run_services.sh: votes and notification fan-out; run_job_queue.sh: JobQueue and Worker
# against BullMQ; run_chat_load.sh: 10 000 WebSockets on examples/chat_server).
#
#   bash benchmarks/run_all.sh
#
# Environment (all optional):
#   REPEAT=5      timed runs per workload and system (median reported, min-max spread)
#   DURATION=1    seconds per timed run
#   WARMUP=1      seconds of warm-up per workload (the Node clients need it for the JIT)
#   JOBS=1        build parallelism (the machine is shared: keep it low)
#   SKIP_BUILD=1  use the binaries already built (build/release/benchmarks)
#   SKIP_NPM=1    use benchmarks/peers/node_modules as it is
#   RAW=file      also keep every raw result line in this file
#   SKIP_SERVICES=1  leave out the service benchmarks run at the end (run_rate_limiter.sh,
#                 run_services.sh, run_user_profiles.sh, run_job_queue.sh, run_chat_load.sh)
#   QUIET_WAIT=180, RETRIES=3, BUDGET=1800
#                 wait up to QUIET_WAIT s for other busy processes before a phase, run a phase
#                 again (up to RETRIES attempts) when one got busy during it; no more waiting or
#                 retrying once the measurements have taken BUDGET s (see "shared-machine guard")
#   BENCH_LOCK=f  hold flock(1) on file f during each phase (not while waiting), so that
#                 benchmarks of several people on one machine do not overlap
#   NICE=-20      run the server and every client at this nice level (root: negative levels),
#                 the same for every system, so that other jobs on a shared machine (compilers)
#                 disturb the figures less; say so when you report figures
#
# Needs: redis-server/redis-benchmark, libhiredis-dev, cmake, ninja, g++, Boost 1.81 (apt-get
# installs what dpkg lacks) and Node.js >= 20 with npm (ioredis 6 and node-redis 6 require it;
# Debian 12's nodejs package is 18: install Node 20 from nodejs.org or NodeSource first). The
# Node clients come from the npm registry at the exact versions of benchmarks/peers/package-lock.json
# (`npm ci`). The server runs on core 0 and every client on core 1 (taskset), the same for every
# system. Not part of the test suite.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-1}
WARMUP=${WARMUP:-1}
JOBS=${JOBS:-1}

BENCH_NAME=run_all
source "$here/lib.sh"
log() { bench_log "$@"; }

# ---- dependencies ---------------------------------------------------------------------------
bench_need redis-server redis-tools libhiredis-dev cmake ninja-build g++ gcc ccache \
  libboost1.81-dev libboost-json1.81-dev libssl-dev util-linux
bench_need_node
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || { log "node $(node --version) is too old: ioredis 6 and node-redis 6 need >= 20"; exit 1; }
bench_npm_peers

# ---- build ----------------------------------------------------------------------------------
bin="$root/build/release/benchmarks"
if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building connection_bench backend_bench (release preset, -j $JOBS)"
  (cd "$root" && cmake --preset release >/dev/null &&
     cmake --build --preset release --target connection_bench backend_bench -j "$JOBS" >&2)
  log "building hiredis_bench (gcc -O2)"
  mkdir -p "$bin"
  gcc -O2 -std=c11 -Wall -Wextra -o "$bin/hiredis_bench" "$here/peers/hiredis_bench.c" -lhiredis
fi
for b in connection_bench backend_bench hiredis_bench; do
  [[ -x $bin/$b ]] || { log "$bin/$b missing (run without SKIP_BUILD)"; exit 1; }
done

# ---- cores, server ----------------------------------------------------------------------------
bench_pin
if [[ -n ${NICE:-} ]]; then
  nice -n "$NICE" true 2>/dev/null || { log "nice -n $NICE not allowed here"; exit 1; }
  server_pin=(nice -n "$NICE" "${server_pin[@]}")
  client_pin=(nice -n "$NICE" "${client_pin[@]}")
  pinning+=", all at nice $NICE"
fi
bench_start_server
redis-cli -p "$port" set 'key:__rand_int__' abc >/dev/null  # what redis-benchmark -t get reads

# ---- shared-machine guard ----------------------------------------------------------------------
# Other engineers' jobs (compilers) skew the figures. A phase (one system's workloads) runs when
# no other process uses >= 30% CPU (waiting up to QUIET_WAIT s); a sampler checks every second
# while it runs, and a phase during which another process got busy is run again (up to RETRIES
# attempts; the last one is kept). Under the table: how many phases stayed noisy.
QUIET_WAIT=${QUIET_WAIT:-180}
RETRIES=${RETRIES:-3}
BUDGET=${BUDGET:-1800}
started=$SECONDS
over_budget() { ((SECONDS - started > BUDGET)); }
if [[ -n ${BENCH_LOCK:-} ]]; then exec 9>"$BENCH_LOCK"; fi
others_busy=0
noisy_phases=()
busy_now() {
  ps -eo pcpu=,comm= | awk '$1 >= 30 && $2 !~ /^(redis-server|redis-benchmark|connection_benc|backend_bench|hiredis_bench|node|ps|awk|sleep|run_all.sh|bash)$/' | wc -l
}
wait_quiet() {
  local waited=0
  while (($(busy_now) > 0 && waited < QUIET_WAIT)) && ! over_budget; do sleep 2; waited=$((waited + 2)); done
  ((waited == 0)) || log "waited ${waited} s for other processes to finish"
}
phase() {  # phase NAME COMMAND...: result lines on stdout, appended to $raw
  local name=$1 attempt busy mon
  shift
  for attempt in $(seq 1 "$RETRIES"); do
    wait_quiet
    [[ -n ${BENCH_LOCK:-} ]] && flock 9
    echo 0 >"$tmp/busy"
    ( m=0; while :; do n=$(busy_now); ((n > m)) && m=$n && echo "$m" >"$tmp/busy"; sleep 1; done ) &
    mon=$!
    log "$name (attempt $attempt)"
    "$@" >"$tmp/phase.out"
    kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null || true
    [[ -n ${BENCH_LOCK:-} ]] && flock -u 9
    busy=$(cat "$tmp/busy")
    ((busy == 0)) && break
    over_budget && break
    log "warning: $busy other busy process(es) during $name"
  done
  if ((busy > 0)); then noisy_phases+=("$name"); ((busy > others_busy)) && others_busy=$busy; fi
  tee -a "$raw" <"$tmp/phase.out" >&2
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
raw="$tmp/raw.txt"
: >"$raw"

# Every result line is "workload=SYSTEM:NAME unit=ops|batches ops_per_s=MED min= max= ...".
tag() { sed "s/^workload=/workload=$1:/"; }

# ---- redis-benchmark -c 1 -P 1 / -P 16 ----------------------------------------------------------
rb_rps() {  # pipeline requests -> GET/s of one run
  local rps
  rps=$("${client_pin[@]}" redis-benchmark -p "$port" -c 1 -P "$1" -t get -n "$2" --csv |
          awk -F'"' '$2 == "GET" { print $4 }')
  [[ -n $rps ]] || { log "redis-benchmark printed no GET line"; exit 1; }
  echo "$rps"
}
redis_benchmark() {  # name pipeline
  local name=$1 pipeline=$2 n rates=()
  n=$(awk -v r="$(rb_rps "$pipeline" $((5000 * pipeline)))" -v d="$DURATION" \
        'BEGIN { n = int(r * d); print (n < 10000 ? 10000 : n) }')
  for _ in $(seq 1 "$REPEAT"); do rates+=("$(rb_rps "$pipeline" "$n")"); done
  printf '%s\n' "${rates[@]}" | sort -g | awk -v name="$name" -v runs="$(IFS=,; echo "${rates[*]}")" '
    { v[NR] = $1 }
    END {
      med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "workload=%s unit=ops ops_per_s=%.0f min=%.0f max=%.0f runs=%s\n", name, med, v[1], v[NR], runs
    }'
}
phase "redis-benchmark -c 1 -P 1" redis_benchmark rb:c1_p1 1
phase "redis-benchmark -c 1 -P 16" redis_benchmark rb:c1_p16 16

# ---- sequential round trips: rediskit rtt_1 and hiredis seq_get interleaved ---------------------
# (one run of each per round, order alternating: sequential round trips drift most over a minute)
one=(--port "$port" --seconds "$DURATION" --repeat 1 --warmup "$WARMUP")
rtt_pairs() {
  local round
  for round in $(seq 1 "$REPEAT"); do
    h() { "${client_pin[@]}" "$bin/hiredis_bench" "${one[@]}" --only seq_get | tag hiredis; }
    r() { "${client_pin[@]}" "$bin/connection_bench" "${one[@]}" --only rtt_1 | grep '^workload=' | tag rediskit; }
    if ((round % 2)); then h; r; else r; h; fi
  done | awk '
  function median(a, n,    i, j, t) {
    for (i = 2; i <= n; ++i) for (j = i; j > 1 && a[j - 1] > a[j]; --j) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    split($1, w, "="); name = w[2]
    if (!(name in n)) order[++names] = name
    k = ++n[name]
    for (i = 2; i <= NF; ++i) {
      split($i, kv, "=")
      if (kv[1] == "ops_per_s") rate[name, k] = kv[2]
      if (kv[1] == "p50_us") p50[name, k] = kv[2]
      if (kv[1] == "p99_us") p99[name, k] = kv[2]
    }
  }
  END {
    for (q = 1; q <= names; ++q) {
      name = order[q]; m = n[name]; runs = ""
      for (k = 1; k <= m; ++k) { r[k] = rate[name, k]; a[k] = p50[name, k]; b[k] = p99[name, k]; runs = runs (k > 1 ? "," : "") r[k] }
      med = median(r, m)
      printf "workload=%s unit=ops ops_per_s=%.0f min=%.0f max=%.0f p50_us=%.1f p99_us=%.1f runs=%s\n",
        name, med, r[1], r[m], median(a, m), median(b, m), runs
    }
  }'
}
phase "rtt_1 / seq_get ($REPEAT interleaved rounds)" rtt_pairs

# ---- hiredis pipelined, rediskit Connection -----------------------------------------------------
args=(--port "$port" --seconds "$DURATION" --repeat "$REPEAT" --warmup "$WARMUP")
hiredis_pipelined() {
  "${client_pin[@]}" "$bin/hiredis_bench" "${args[@]}" --only pipelined_100,batch_100_hgetall | tag hiredis
}
connection() {
  "${client_pin[@]}" "$bin/connection_bench" "${args[@]}" \
    --only callers_1,callers_16,callers_64,callers_256,batch_100_hgetall,batch_100_hgetall_maps |
    grep '^workload=' | tag rediskit
}
phase "hiredis_bench pipelined_100,batch_100_hgetall" hiredis_pipelined
phase "connection_bench callers_*,batch_100_hgetall*" connection

# ---- the Node clients ---------------------------------------------------------------------------
node_client() { "${client_pin[@]}" node "$here/peers/node_bench.mjs" --client "$1" "${args[@]}" | tag "$1"; }
for client in ioredis ioredis-auto node-redis5 node-redis6; do
  phase "node_bench --client $client" node_client "$client"
done

# ---- MemoryBackend and RedisBackend (typed commands) --------------------------------------------
# backend_bench prints "workload=W backend=memory|redis unit=cmds cmds_per_s=... min= max=";
# a batch of 100 counts 100 commands: divided by 100 here for the *_b100 workloads (batches/s).
backends() {
  "${client_pin[@]}" "$bin/backend_bench" "${args[@]}" --only get_c64,hgetall_b100,profiles_b100 |
    awk '/^workload=/ {
      for (i = 1; i <= NF; ++i) { split($i, kv, "="); f[kv[1]] = kv[2] }
      d = f["workload"] ~ /_b100$/ ? 100 : 1
      printf "workload=%s:%s unit=%s ops_per_s=%.2f min=%.2f max=%.2f\n", f["backend"], f["workload"],
        d == 100 ? "batches" : "ops", f["cmds_per_s"] / d, f["min"] / d, f["max"] / d
    }'
}
phase "backend_bench get_c64,hgetall_b100,profiles_b100" backends
[[ -n ${RAW:-} ]] && cp "$raw" "$RAW"

# ---- the table ------------------------------------------------------------------------------------
versions="redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), hiredis $(dpkg-query -W -f='${Version}' libhiredis-dev), node $(node --version)"
versions+=", ioredis $(node -p "require('$here/peers/node_modules/ioredis/package.json').version")"
versions+=", node-redis $(node -p "require('$here/peers/node_modules/redis5/package.json').version") / $(node -p "require('$here/peers/node_modules/redis6/package.json').version")"
awk -v repeat="$REPEAT" -v duration="$DURATION" -v warmup="$WARMUP" -v pinning="$pinning" \
    -v load_before="$load_before" -v others_busy="$others_busy" -v versions="$versions" \
    -v noisy="$( ((${#noisy_phases[@]})) && printf '%s; ' "${noisy_phases[@]}" | sed 's/; $//')" -v retries="$RETRIES" \
    -v cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    -v cores="$(nproc)" '
  {
    split($1, w, "="); name = w[2]
    for (i = 2; i <= NF; ++i) { split($i, kv, "="); f[name, kv[1]] = kv[2] }
    seen[name] = 1
  }
  function has(n) { return (n in seen) }
  function num(v) { return v >= 1e6 ? sprintf("%.2fM", v / 1e6) : v >= 1e4 ? sprintf("%.1fk", v / 1e3) : sprintf("%.0f", v) }
  function fig(n,    s) {  # median (min–max): ops/s, or ms per batch
    if (!has(n)) return "-"
    if (f[n, "unit"] == "batches")
      return sprintf("%.3f ms (%.3f–%.3f)", 1000 / f[n, "ops_per_s"], 1000 / f[n, "max"], 1000 / f[n, "min"])
    s = sprintf("%s/s (%s–%s)", num(f[n, "ops_per_s"]), num(f[n, "min"]), num(f[n, "max"]))
    if ((n, "p50_us") in f) s = s sprintf(", p50 %.0f µs", f[n, "p50_us"])
    return s
  }
  # rediskit / peer on the medians: a throughput ratio (for batches: how many times faster)
  function ratio(rk, peer) { return (has(rk) && has(peer) && f[peer, "ops_per_s"] > 0) ? f[rk, "ops_per_s"] / f[peer, "ops_per_s"] : -1 }
  function peer(rk, p,    r) {  # a peer cell: its figure, then the ratio rediskit / peer
    if (!has(p)) return "-"
    r = ratio(rk, p)
    return fig(p) (r < 0 ? "" : sprintf("<br>**%.2fx**", r))
  }
  function goal(rk, p, want, what,    r) {
    r = ratio(rk, p)
    if (r < 0) return what " ≥ " want "x: n/a"
    return sprintf("%s ≥ %gx: %.2fx %s", what, want, r, r >= want ? "✅" : "❌")
  }
  # one row; the peers are named by workload prefix, "" for none
  function row(label, rk, hi, rb, wl, rback, goals) {
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, fig(rk),
      hi == "" ? "-" : peer(rk, hi), rb == "" ? "-" : peer(rk, rb),
      wl == "" ? "-" : peer(rk, "ioredis:" wl), wl == "" ? "-" : peer(rk, "ioredis-auto:" wl),
      wl == "" ? "-" : peer(rk, "node-redis5:" wl), wl == "" ? "-" : peer(rk, "node-redis6:" wl),
      rback == "" ? "-" : peer(rk, rback), goals
  }
  END {
    print "| workload | rediskit | hiredis | redis-benchmark | ioredis | ioredis auto-pipelining | node-redis 5 | node-redis 6 | RedisBackend | goals (rediskit / peer) |"
    print "|---|---|---|---|---|---|---|---|---|---|"
    rk = "rediskit:rtt_1"
    row("sequential GET, 1 in flight (Connection; hiredis sync; redis-benchmark -c1 -P1)", rk,
        "hiredis:seq_get", "rb:c1_p1", "rtt_1", "", goal(rk, "hiredis:seq_get", 0.9, "hiredis"))
    row("1 caller on one connection, GET loop", "rediskit:callers_1", "", "", "callers_1", "", "")
    row("16 callers on one connection (redis-benchmark -c1 -P16)", "rediskit:callers_16", "",
        "rb:c1_p16", "callers_16", "", "")
    rk = "rediskit:callers_64"
    row("64 callers on one connection (redis-benchmark -c1 -P16)", rk, "", "rb:c1_p16", "callers_64", "",
        goal(rk, "rb:c1_p16", 1.0, "-c1 -P16"))
    rk = "rediskit:callers_256"
    row("256 callers on one connection (hiredis pipelined by 100)", rk, "hiredis:pipelined_100", "",
        "callers_256", "", goal(rk, "node-redis5:callers_256", 2, "node-redis 5") "<br>" \
        goal(rk, "ioredis-auto:callers_256", 6, "ioredis auto") "<br>" goal(rk, "hiredis:pipelined_100", 0.7, "hiredis ×100"))
    rk = "redis:profiles_b100"
    row("100 HGETALL batch, RedisBackend typed → 100 field/value vectors (hiredis: reply objects; ioredis: pipeline(); node-redis: Promise.all)",
        rk, "hiredis:batch_100_hgetall", "", "batch_100_hgetall", "", goal(rk, "node-redis5:batch_100_hgetall", 3, "node-redis 5"))
    rk = "rediskit:batch_100_hgetall"
    row("100 HGETALL batch, Connection → resp3::Tree", rk, "hiredis:batch_100_hgetall", "",
        "batch_100_hgetall", "", goal(rk, "node-redis5:batch_100_hgetall", 3, "node-redis 5"))
    rk = "rediskit:batch_100_hgetall_maps"
    row("100 HGETALL batch, Connection → 100 unordered_map", rk, "hiredis:batch_100_hgetall", "",
        "batch_100_hgetall", "", goal(rk, "node-redis5:batch_100_hgetall", 3, "node-redis 5"))
    rk = "memory:get_c64"
    row("MemoryBackend: GET from 64 callers", rk, "", "", "", "redis:get_c64", goal(rk, "redis:get_c64", 10, "RedisBackend"))
    rk = "memory:hgetall_b100"
    row("MemoryBackend: 100 HGETALL batch (backend_bench profiles)", rk, "", "", "", "redis:hgetall_b100",
        goal(rk, "redis:hgetall_b100", 10, "RedisBackend"))
    rk = "memory:profiles_b100"
    row("MemoryBackend: 100 HGETALL batch (the peers\x27 profiles)", rk, "", "", "", "redis:profiles_b100",
        goal(rk, "redis:profiles_b100", 10, "RedisBackend"))
    printf "\nMedian of %d runs of %s s after %s s warm-up (min–max); under each peer, in bold: rediskit / peer on the medians (throughput; for batches, ms per batch of 100, how many times faster). ", repeat, duration, warmup
    printf "Sequential GET: rediskit and hiredis runs interleaved (one each per round); p50: median of the runs\x27 p50 latency. "
    printf "%d cores (%s), %s. %s. Load average before the run: %s. ", cores, cpu, pinning, versions, load_before
    if (noisy == "") printf "No other process was busy during any phase kept (a phase is retried up to %d times).\n", retries
    else printf "**Phases during which another process stayed busy (%d at most) after %d attempts: %s.**\n", others_busy, retries, noisy
  }' "$raw"

# ---- services (issues 18, 15, 19): RateLimiter against rate-limiter-flexible, votes, fan-out,
# ---- job queues against BullMQ, the chat server under 10 000 WebSockets ---------------------
# Their own scripts, each with a throwaway server of its own and its own table, after the one
# above (SKIP_SERVICES=1 leaves them out). They take REPEAT from here and their own DURATION.
if [[ -z ${SKIP_SERVICES:-} ]]; then
  log "services: run_rate_limiter.sh, run_services.sh, run_user_profiles.sh, run_job_queue.sh," \
    "run_chat_load.sh"
  SKIP_NPM=1 REPEAT=$REPEAT bash "$here/run_rate_limiter.sh"
  REPEAT=$REPEAT bash "$here/run_services.sh"
  SKIP_NPM=1 bash "$here/run_user_profiles.sh"
  SKIP_NPM=1 bash "$here/run_job_queue.sh"
  bash "$here/run_chat_load.sh"
fi
