# Shared by the benchmark scripts (source it): packages, core pinning, a throwaway redis-server.
#
#   source "$here/lib.sh"
#   bench_need redis-server redis-tools cmake ...   # apt-get install what dpkg lacks
#   bench_need_node                                 # node and npm (Debian's when missing)
#   bench_npm_peers                                 # npm ci in peers/ (unless SKIP_NPM)
#   bench_build cache_bench                         # release build (unless SKIP_BUILD); bin=
#   bench_pin                                       # server_pin, client_pin, pinning
#   bench_start_server                              # port, server_pid, tmp; stopped on exit

bench_log() { echo "${BENCH_NAME:-bench}: $*" >&2; }

bench_need_node() {
  command -v node >/dev/null && command -v npm >/dev/null || bench_need nodejs npm
}

# The Node.js peers at the exact versions of peers/package-lock.json, unless SKIP_NPM is set.
bench_npm_peers() {
  bench_need_node
  [[ -n ${SKIP_NPM:-} ]] && return 0
  bench_log "npm ci in benchmarks/peers (exact versions from package-lock.json)"
  (cd "$(dirname "${BASH_SOURCE[0]}")/peers" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

bench_need() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  bench_log "installing ${missing[*]}"
  local sudo=
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# Builds benchmark TARGET with the release preset (-j ${JOBS:-1}) unless SKIP_BUILD is set, and
# sets `bin` to the folder of the benchmark executables; exits if TARGET is not there.
bench_build() {
  local target=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin="$root/build/release/benchmarks"
  if [[ -z ${SKIP_BUILD:-} ]]; then
    bench_log "building $target (release preset, -j ${JOBS:-1})"
    (cd "$root" && cmake --preset release >/dev/null &&
       cmake --build --preset release --target "$target" -j "${JOBS:-1}" >&2)
  fi
  [[ -x $bin/$target ]] || { bench_log "$target missing in $bin"; exit 1; }
}

# The server on core 0 and every client on core 1 (the same for every system compared: where
# they land on 2 cores moves round-trip figures by about 1.5x).
bench_pin() {
  if (($(nproc) >= 2)); then
    server_pin=(taskset -c 0)
    client_pin=(taskset -c 1)
    pinning="server on core 0, clients on core 1"
  else
    server_pin=()
    client_pin=()
    pinning="one core: no pinning"
    bench_log "only one core: running unpinned"
  fi
}

# A loopback port nothing listens on (not reserved: start the server at once).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# A redis-server on a free loopback port (from BENCH_PORT_MIN, default 20000, to
# BENCH_PORT_MIN + BENCH_PORT_SPAN - 1, default 40000 ports), no persistence, in a temporary
# directory; it is stopped and the directory removed when the script exits.
bench_start_server() {
  tmp=$(mktemp -d)
  server_pid=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  local _
  for _ in $(seq 1 50); do
    port=$((${BENCH_PORT_MIN:-20000} + RANDOM % ${BENCH_PORT_SPAN:-40000}))
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || continue
    "${server_pin[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
    server_pid=$!
    for _ in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  done
  [[ -n $server_pid ]] || { bench_log "could not start redis-server"; exit 1; }
  bench_log "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on port $port ($pinning)"
}

bench_cleanup() {
  if [[ -n ${server_pid:-} ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [[ -n ${tmp:-} ]] && rm -rf "$tmp"
}
