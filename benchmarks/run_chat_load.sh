#!/usr/bin/env bash
# Chat server load (examples/chat_server, issue 19): chat_load opens CONNECTIONS WebSockets on
# loopback, spread over TWO chat_server processes that share one throwaway redis-server
# (FallbackBackend), joins them to rooms of 10, sends RATE messages/s for SECONDS s and reports
# connections held, deliveries/s end to end, p50/p90/p99 delivery latency, memory per connection
# (each server's VmRSS growth over the setup) and the CPU of the client, both servers and Redis.
# Then the same load against ONE chat_server on MemoryBackend (no Redis), for comparison. Prints
# both chat_load blocks and one markdown table. A run takes about a minute.
#
#   bash benchmarks/run_chat_load.sh
#
# Environment (all optional): CONNECTIONS=10000, RATE=2000 (messages/s in total), SENDERS (default
# one per room: 1000; the server lets a user send 30 messages per 10 s, so keep RATE / SENDERS
# under 3), SECONDS=10 (measured; after 1 s of warm-up, before up to 2 s of drain), ROOM_SIZE=10,
# CONNECT_CONCURRENCY=200, MODES=redis,memory (which runs), QUIET_WAIT=300 and QUIET_PCT=30
# (before each run, wait up to QUIET_WAIT s for the machine to be under QUIET_PCT % of a core
# busy), JOBS=1 (build parallelism), SKIP_BUILD=1 (use the binaries in BUILD_DIR as they are),
# BUILD_DIR=build/release.
#
# Not pinned: the client, both servers and Redis share the machine's cores (on a 2-core machine
# they compete; the report gives each one's CPU). Needs `ulimit -n` of at least CONNECTIONS +
# 1024: it raises the limit to 65536, or to the hard limit when that is lower but enough.
set -euo pipefail

# SECONDS is bash's own clock (seconds since the shell started); a value in the environment only
# moves it. Read the knob from the environment itself, before anything else runs.
duration=$(printenv SECONDS || echo 10)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
CONNECTIONS=${CONNECTIONS:-10000}
RATE=${RATE:-2000}
ROOM_SIZE=${ROOM_SIZE:-10}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-200}
MODES=${MODES:-redis,memory}
QUIET_WAIT=${QUIET_WAIT:-300}
QUIET_PCT=${QUIET_PCT:-30}
JOBS=${JOBS:-1}
BUILD_DIR=${BUILD_DIR:-$root/build/release}
BENCH_NAME=run_chat_load
source "$here/lib.sh"
log() { bench_log "$@"; }

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev jq curl

# ---- build ------------------------------------------------------------------------------------
if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building chat_server and chat_load in $BUILD_DIR (-j $JOBS)"
  if [[ $BUILD_DIR == "$root/build/release" ]]; then
    (cd "$root" && cmake --preset release >/dev/null &&
       cmake --build build/release --target chat_server chat_load -j "$JOBS" >&2)
  else
    cmake --build "$BUILD_DIR" --target chat_server chat_load -j "$JOBS" >&2
  fi
fi
chat_server=$BUILD_DIR/examples/chat_server/chat_server
chat_load=$BUILD_DIR/benchmarks/chat_load
for b in "$chat_server" "$chat_load"; do
  [[ -x $b ]] || { log "$b missing (run without SKIP_BUILD)"; exit 1; }
done

# ---- open files: one per connection in the client, half of them in each server ------------------
need=$((CONNECTIONS + 1024))
if ! ulimit -n 65536 2>/dev/null; then
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited ]] && ((hard < need)); then
    log "cannot raise ulimit -n to 65536 (hard limit $hard); $CONNECTIONS connections need $need:" \
      "raise the hard limit (limits.conf, docker --ulimit nofile=65536) or lower CONNECTIONS"
    exit 1
  fi
  ulimit -n "$hard"
  log "ulimit -n 65536 not allowed here; using the hard limit $hard (>= $need)"
fi

# ---- redis-server, the chat servers --------------------------------------------------------------
server_pin=()
pinning="unpinned: client, servers and Redis share $(nproc) cores"
bench_start_server
redis_pid=$server_pid
redis-cli -p "$port" config set maxclients $((CONNECTIONS + 1024)) >/dev/null ||
  log "warning: could not raise Redis maxclients"

chat_pids=()  # the chat_servers running, their stderr files and their http://HOST:PORT
chat_logs=()
chat_http=()
# SIGTERM to every chat_server started, up to 10 s for them to exit (PROTOCOL.md: it closes its
# sockets and exits 0), then SIGKILL to those still running, said on stderr.
stop_chats() {
  local p _ left
  for p in "${chat_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    left=0
    for p in "${chat_pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for p in "${chat_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      log "chat_server pid $p still running 10 s after SIGTERM: killed (SIGKILL)"
      kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  chat_pids=()
  chat_logs=()
  chat_http=()
}
trap 'stop_chats; bench_cleanup' EXIT

# start_chat NAME ARGS...: one chat_server --port 0; sets chat_url (ws://HOST:PORT/ws) and chat_pid.
start_chat() {
  local name=$1 line= _
  shift
  "$chat_server" --port 0 --name "$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  chat_pid=$!
  chat_pids+=("$chat_pid")
  chat_logs+=("$tmp/$name.err")
  for _ in $(seq 1 300); do
    line=$(grep -m1 '^listening on http://' "$tmp/$name.out" 2>/dev/null || true)
    [[ -n $line ]] && break
    kill -0 "$chat_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $line ]]; then
    log "chat_server $name did not print its 'listening on' line; its stderr:"
    tail -n 20 "$tmp/$name.err" >&2
    exit 1
  fi
  chat_url=$(sed -E 's#^listening on http://([^/]+)/.*#ws://\1/ws#' <<<"$line")
  chat_http+=("$(sed -E 's#^listening on (http://[^/]+)/.*#\1#' <<<"$line")")
  log "chat_server $name (pid $chat_pid) at $chat_url"
}

# server_counters: each running chat_server's own counters from /metrics (curl), one line each:
# what it stored and fanned out, and what it lost (bus_gaps: its event subscriber dropped events
# because it fell behind; slow_consumers: sockets closed for not reading).
server_counters() {
  local i names
  names='messages_sent|events_published|events_received|frames_out|bus_gaps|slow_consumers'
  names+='|rate_limited|errors'
  for i in "${!chat_pids[@]}"; do
    echo "chat_server pid ${chat_pids[$i]} /metrics: $(curl -s --max-time 5 "${chat_http[$i]}/metrics" |
      sed -nE "s/^rediskit_chat_($names)\\{[^}]*\\} ([0-9]+).*/\\1 \\2/p" |
      paste -sd, - | sed 's/,/, /g')"
  done
}

# check_chats: every chat_server started is still running (else its log, and fail).
check_chats() {
  local i ok=1
  for i in "${!chat_pids[@]}"; do
    if ! kill -0 "${chat_pids[$i]}" 2>/dev/null; then
      log "chat_server pid ${chat_pids[$i]} died; its stderr:"
      tail -n 30 "${chat_logs[$i]}" >&2
      ok=0
    fi
  done
  ((ok))
}

# quiet_machine: waits (up to QUIET_WAIT s) until the machine is less than QUIET_PCT % of a core
# busy over 2 s (/proc/stat), so that other jobs (compilers) do not share the cores with the run.
# chat_load reports what other processes used during its window anyway (`others_cpu_pct`).
busy_pct() {
  local a b
  read -ra a </proc/stat
  sleep 2
  read -ra b </proc/stat
  echo $(( ((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])) *
           100 / (2 * $(getconf CLK_TCK)) ))
}
quiet_machine() {
  local waited=0 busy
  while busy=$(busy_pct); ((busy >= QUIET_PCT && waited < QUIET_WAIT)); do
    ((waited == 0)) && log "the machine is busy ($busy % of a core): waiting up to $QUIET_WAIT s"
    waited=$((waited + 2))
  done
  ((waited == 0)) || log "waited $waited s for other processes (busy: $busy % of a core)"
}

load_args=(--connections "$CONNECTIONS" --rate "$RATE" --seconds "$duration"
           --room-size "$ROOM_SIZE" --connect-concurrency "$CONNECT_CONCURRENCY")
[[ -n ${SENDERS:-} ]] && load_args+=(--senders "$SENDERS")
results=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)

if [[ ,$MODES, == *,redis,* ]]; then
  prefix="load$$"
  start_chat load-a --redis "redis://127.0.0.1:$port" --prefix "$prefix"
  url_a=$chat_url pid_a=$chat_pid
  start_chat load-b --redis "redis://127.0.0.1:$port" --prefix "$prefix"
  url_b=$chat_url pid_b=$chat_pid
  quiet_machine
  log "chat_load: $CONNECTIONS connections over 2 processes on Redis, $RATE msg/s, $duration s"
  "$chat_load" --url "$url_a" --url "$url_b" --server-pid "$pid_a" --server-pid "$pid_b" \
    --cpu-pid "$redis_pid" --label "redis, 2 processes" "${load_args[@]}" | tee "$tmp/redis.txt"
  echo
  check_chats
  server_counters
  results+=("$(sed -n 's/^RESULT //p' "$tmp/redis.txt")")
  echo "Redis: $(redis-cli -p "$port" info memory | grep -m1 '^used_memory_human:' | tr -d '\r')," \
    "$(redis-cli -p "$port" info clients | grep -m1 '^connected_clients:' | tr -d '\r')"
  echo
  stop_chats
fi

if [[ ,$MODES, == *,memory,* ]]; then
  start_chat load-mem
  quiet_machine
  log "chat_load: $CONNECTIONS connections on one MemoryBackend process, $RATE msg/s, $duration s"
  "$chat_load" --url "$chat_url" --server-pid "$chat_pid" --label "memory, 1 process" \
    "${load_args[@]}" | tee "$tmp/memory.txt"
  echo
  check_chats
  server_counters
  echo
  results+=("$(sed -n 's/^RESULT //p' "$tmp/memory.txt")")
  stop_chats
fi

# ---- one table -----------------------------------------------------------------------------------
echo "| backend | connections held / attempted | sent msg/s | deliveries/s | delivered / expected |" \
  "p50 ms | p90 ms | p99 ms | max ms | rate_limited | KiB per connection |" \
  "CPU % client / servers / Redis | CPU % of other processes |"
echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"
row='"| \(.label) | \(.held) / \(.connections) | \(.sent_per_s | round) | \(.deliveries_per_s | round)
  | \(.delivered) / \(.expected) | \(.p50_ms * 100 | round / 100) | \(.p90_ms * 100 | round / 100)
  | \(.p99_ms * 100 | round / 100) | \(.max_ms * 10 | round / 10) | \(.rate_limited)
  | \(.kib_per_connection * 10 | round / 10) | \(.client_cpu_pct | round)
  / \([.servers[].cpu_pct | round] | map(tostring) | join(" + "))
  / \(if (.cpu_pids | length) > 0 then (.cpu_pids[0].cpu_pct | round | tostring) else "-" end)
  | \(.others_cpu_pct | round) |"'
for r in "${results[@]}"; do jq -r "$row" <<<"$r" | tr -d '\n' | sed 's/  */ /g'; echo; done
echo
echo "One run each, $(($(date +%s) - started)) s; $(nproc) cores" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $pinning;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'); commit" \
  "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?');" \
  "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)."
