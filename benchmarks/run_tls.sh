#!/usr/bin/env bash
# TLS against plain TCP on ONE redis-server (issue 13): connection_bench's sequential GETs
# (rtt_1) and 64 callers on one connection (callers_64), over the server's plain port and over
# its tls-port, in interleaved rounds (plain, TLS, TLS, plain, ...) so that both see the same
# machine. Prints one line per workload and transport, then a table with the TLS/plain ratio.
#
#   bash benchmarks/run_tls.sh        # REPEAT=5 DURATION=2 WARMUP=0.5 JOBS=1 SKIP_BUILD=
#
# The CA and the server certificate are made with the openssl tool in a temporary directory;
# the server runs pinned on core 0, the client on core 1 (lib.sh), and is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_NAME=run_tls
source "$here/lib.sh"
REPEAT=${REPEAT:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-0.5}
log() { bench_log "$*"; }

bench_need redis-server redis-tools cmake ninja-build g++ ccache libboost1.81-dev \
  libboost-json1.81-dev libssl-dev openssl util-linux
bench_build connection_bench
bench_pin

tmp=$(mktemp -d)
server_pid=
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---- certificates ----------------------------------------------------------------------------
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" -days 2 \
  -subj "/CN=rediskit bench CA" 2>/dev/null
openssl req "${ec[@]}" -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" \
  2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/server.ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -set_serial 1 \
  -days 2 -out "$tmp/server.crt" -extfile "$tmp/server.ext" 2>/dev/null

# ---- a server with a plain and a TLS port -----------------------------------------------------
port=$(free_port)
tls_port=$(free_port)
"${server_pin[@]}" redis-server --port "$port" --tls-port "$tls_port" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no \
  --tls-cert-file "$tmp/server.crt" --tls-key-file "$tmp/server.key" \
  --tls-ca-cert-file "$tmp/ca.crt" --tls-auth-clients no &
server_pid=$!
for _ in $(seq 1 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null 2>&1 || { log "redis-server did not start"; exit 1; }
log "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'): plain $port, TLS $tls_port ($pinning)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- interleaved rounds -----------------------------------------------------------------------
common=(--seconds "$DURATION" --repeat 1 --warmup "$WARMUP" --only rtt_1,callers_64)
plain() { "${client_pin[@]}" "$bin/connection_bench" --port "$port" "${common[@]}" |
            grep '^workload=' | sed 's/^workload=/workload=plain:/'; }
tls() { "${client_pin[@]}" "$bin/connection_bench" --port "$tls_port" --tls-ca "$tmp/ca.crt" \
          "${common[@]}" | grep '^workload=' | sed 's/^workload=/workload=tls:/'; }
raw="$tmp/raw.txt"
for round in $(seq 1 "$REPEAT"); do
  if ((round % 2)); then plain; tls; else tls; plain; fi
done | tee "$raw" >&2

# ---- table ------------------------------------------------------------------------------------
awk -v repeat="$REPEAT" -v duration="$DURATION" -v load="$load_before" -v pinning="$pinning" '
  function median(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    split($1, w, "="); name = w[2]
    for (i = 2; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "ops_per_s") { n[name]++; r[name, n[name]] = kv[2] }
      if (kv[1] == "p50_us") { p[name, n[name]] = kv[2] }
    }
  }
  END {
    printf "\n| workload | plain TCP, ops/s (min-max) | TLS, ops/s (min-max) | TLS / plain |\n|---|---|---|---|\n"
    split("rtt_1 callers_64", ws, " ")
    for (k = 1; k <= 2; k++) {
      for (t = 1; t <= 2; t++) {
        tr = t == 1 ? "plain:" : "tls:"; nm = tr ws[k]; c = n[nm]
        delete v; lo = 1e18; hi = 0
        for (i = 1; i <= c; i++) { v[i] = r[nm, i]; if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
        med[t] = median(v, c); rng[t] = sprintf("%.0f (%.0f-%.0f)", med[t], lo, hi)
      }
      printf "| %s | %s | %s | %.2fx |\n", ws[k], rng[1], rng[2], med[2] / med[1]
    }
    printf "\nMedian of %d interleaved runs of %s s each; %s; load average before: %s.\n", repeat, duration, pinning, load
  }' "$raw"
