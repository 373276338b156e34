#!/usr/bin/env bash
# rediskit: build and check everything, on a fresh or a ready Debian 12 machine.
#
#   bash scripts/run.sh example   build and run examples/quick_start (release preset)
#   bash scripts/run.sh demo [ARGS]  build examples/chat_server (release preset) and run it on
#                                 MemoryBackend: it prints the URL to open; ARGS go to the
#                                 server (e.g. --host 0.0.0.0 --port 8080, --redis URL)
#   bash scripts/run.sh test      everything CI checks:
#       interop                   Node.js (Debian's, when missing) and npm ci in tests/interop:
#                                 seed 001's own client (ioredis) for the interop test, and in
#                                 examples/chat_server/tests: playwright-core for the browser
#                                 test, which drives Debian's chromium
#       gcc-debug, clang-asan     configured one after the other; then, side by side, each
#                                 preset builds and runs its tests (g++'s chain then runs the
#                                 install checks and the fuzzer):
#         gcc-debug               every test and example under g++ at -O0 with libstdc++
#                                 assertions (no sanitizer)
#         clang-asan              every test and example under clang++ with ASan + UBSan, the
#                                 standalone-header check and the benchmarks (-fsyntax-only)
#       install                   configure `release`, cmake --install, then
#                                 tests/install_consumer built against the installed package
#                                 (find_package) and as add_subdirectory; conanfile.py and the
#                                 vcpkg port state the version of version.hpp
#       fuzz                      when tests/fuzz/*_fuzzer.cpp exist: each fuzzer runs
#                                 $REDISKIT_FUZZ_SECONDS (30) on a copy of its corpus
#       readme                    README.md's first ```cpp block == examples/quick_start.cpp
#     Output of what ran side by side is in build/logs/, printed in order when it ends.
#     Why these two configurations (measured, README "Tests"): g++ 12 runs every test for its
#     coroutine bugs, which glibc's heap checks catch without ASan; ASan doubled g++'s compile
#     time (65 s against 36 s for one suite) and -O2 tripled it (112 s), so ASan and UBSan run
#     under clang only, whose instrumented builds cost less.
#     then prints a summary whose last line is `tests: N passed, N failed`. Every step runs even
#     when an earlier one failed; the exit status is non-zero when anything failed.
#
# Missing Debian packages are installed first (apt-get update runs once, only when something
# is missing). Environment: REDISKIT_JOBS (compile jobs in all, default 2, shared by the two
# builds that run side by side),
# REDISKIT_TEST_JOBS (tests each of the two ctest runs runs at once, default twice
# REDISKIT_JOBS),
# REDISKIT_FUZZ_SECONDS.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export DEBIAN_FRONTEND=noninteractive
JOBS=${REDISKIT_JOBS:-2}
# Tests mostly wait (on Redis, on TTLs, on failovers): the two CTest runs, side by side, run
# twice as many tests each as there are compile jobs, four times as many in all (g++ suites on
# 2 cores: 62 s at -j4, 36 s at -j8, 25 s of CPU either way). Eight each, sixteen in all,
# brought out timing races in the failover tests.
TEST_JOBS=${REDISKIT_TEST_JOBS:-$((JOBS * 2))}
FUZZ_SECONDS=${REDISKIT_FUZZ_SECONDS:-30}

BUILD_PACKAGES=(g++ cmake ninja-build ccache libboost1.81-dev libboost-json1.81-dev libssl-dev)
# openssl: the TLS test fixture makes its CA and certificates with the command-line tool.
# chromium: the chat server's browser test (playwright-core never downloads a browser).
TEST_PACKAGES=("${BUILD_PACKAGES[@]}" libboost-test1.81-dev redis-server redis-tools openssl
               clang clang-14 libclang-rt-14-dev chromium)

log() { printf '\n==> %s\n' "$*"; }

# ensure_packages PKG...: installs, with one apt-get update, the packages dpkg lacks.
ensure_packages() {
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "note: no dpkg (not Debian?): assuming these are installed: $*"
    return 0
  fi
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "error: missing packages: ${missing[*]} (run as root, or install them)" >&2
      return 1
    fi
    sudo=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  fi
  log "installing missing packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -q </dev/null &&
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# --- step bookkeeping -----------------------------------------------------------------------------
STEP_NAMES=() STEP_SECS=() STEP_RESULTS=()
CFG_NAMES=() CFG_PASSED=() CFG_FAILED=() CFG_SKIPPED=()
ANY_FAILURE=0

# step NAME CMD...: runs CMD, records its time and result, returns its status.
step() {
  local name=$1 start=$SECONDS rc
  shift
  log "$name"
  "$@"
  rc=$?
  STEP_NAMES+=("$name")
  STEP_SECS+=($((SECONDS - start)))
  if ((rc == 0)); then STEP_RESULTS+=(ok); else STEP_RESULTS+=("FAILED ($rc)"); ANY_FAILURE=1; fi
  return "$rc"
}

record() {  # record CONFIG PASSED FAILED SKIPPED: adds to the counts of CONFIG
  local i
  (($3 > 0)) && ANY_FAILURE=1
  for i in "${!CFG_NAMES[@]}"; do
    if [[ ${CFG_NAMES[$i]} == "$1" ]]; then
      CFG_PASSED[i]=$((CFG_PASSED[i] + $2)) CFG_FAILED[i]=$((CFG_FAILED[i] + $3))
      CFG_SKIPPED[i]=$((CFG_SKIPPED[i] + $4))
      return 0
    fi
  done
  CFG_NAMES+=("$1") CFG_PASSED+=("$2") CFG_FAILED+=("$3") CFG_SKIPPED+=("$4")
  return 0
}

attr() {  # attr NAME "<tag ...>": the numeric attribute NAME of the tag (0 when absent)
  local v
  v=$(sed -n "s/.*[[:space:]]$1=\"\([0-9]*\)\".*/\1/p" <<<"$2")
  echo "${v:-0}"
}

# output_gist BUILD_DIR TEST: what a sanitizer or a crash said in TEST's output (CTest's log),
# and its last lines: CI's record of a long run keeps the summary, not the middle.
output_gist() {
  local out
  out=$(awk -v n="$2" '$0 ~ ("Testing: " n "$") {on = 1; next}
                       on && /^<end of output>$/ {exit}
                       on {print}' "$1/Testing/Temporary/LastTest.log" 2>/dev/null)
  grep -a -m8 -E 'ERROR: |SUMMARY: |runtime error|Direct leak|terminate called|Segmentation' \
    <<<"$out" | sed 's/^/  | /'
  echo "  | ..."
  tail -n 8 <<<"$out" | sed 's/^/  | /'
}

# count_ctest CONFIG BUILD_DIR: test cases of one configuration. Boost.Test executables count
# their test cases (JUnit XML in BUILD_DIR/test-results); every other CTest test (fixture,
# examples, checks) counts as one case. An executable that failed without failing cases in its
# XML (crash, sanitizer report at exit, timeout, fixture failure) adds one failed case.
count_ctest() {
  local cfg=$1 dir=$2 passed=0 failed=0 skipped=0
  local junit="$dir/ctest-junit.xml" name status xml root t f e
  if [[ ! -f $junit ]]; then
    echo "no CTest results in $junit"
    record "$cfg" 0 1 0
    return
  fi
  while read -r name status; do
    xml="$dir/test-results/$name.xml"
    if [[ -f $xml ]]; then
      # The root element comes first; never scan a whole (possibly huge) file.
      root=$(head -c 65536 "$xml" | grep -a -m1 -o '<testsuite [^>]*>')
      # `tests` counts the cases that ran. `skipped` also counts the cases of the executable's
      # other files, which this CTest test leaves out (--run_test): not this test's to count.
      t=$(attr tests "$root") f=$(attr failures "$root") e=$(attr errors "$root")
      passed=$((passed + t - f - e)) failed=$((failed + f + e))
      if [[ $status != run ]] && ((f + e == 0)); then
        echo "$cfg: $name failed outside its test cases (see its output above); in short:"
        output_gist "$dir" "$name"
        failed=$((failed + 1))
      fi
      continue
    fi
    case $status in
      run) passed=$((passed + 1)) ;;
      disabled) skipped=$((skipped + 1)) ;;
      *) failed=$((failed + 1)) ;;
    esac
  done < <(grep -o '<testcase name="[^"]*"[^>]*status="[^"]*"' "$junit" |
             sed 's/<testcase name="\([^"]*\)".*status="\([^"]*\)"/\1 \2/')
  record "$cfg" "$passed" "$failed" "$skipped"
}

# Side by side. CI runs on 2 cores, and much of it leaves one idle: a build's last and longest
# translation units, tests that wait on Redis, TTLs and failovers, a fuzzer on one core. So
# each preset builds and then runs its tests, side by side with the other: g++'s tests (and
# then the install checks and the fuzzer) run while clang still compiles. An edit to one header
# then rebuilds one TU per compiler at the same time.
#
# blocks TITLE FN...: runs each function FN in the background, its output into
# build/logs/FN.log, printed in order once all have ended. The steps, cases and failures each
# one records (step, record, one_case) join this shell's; a step named "TITLE (wall)" records
# how long the blocks took together.
blocks() {
  local title=$1 start=$SECONDS fn i
  shift
  local fns=("$@") pids=()
  mkdir -p "$ROOT/build/logs"
  log "$title: ${fns[*]}"
  for fn in "${fns[@]}"; do
    rm -f "$ROOT/build/logs/$fn.state"  # a block that dies writes none: counted as failed
    (
      STEP_NAMES=() STEP_SECS=() STEP_RESULTS=()
      CFG_NAMES=() CFG_PASSED=() CFG_FAILED=() CFG_SKIPPED=() ANY_FAILURE=0
      "$fn" >"$ROOT/build/logs/$fn.log" 2>&1
      dump_state >"$ROOT/build/logs/$fn.state"
    ) &
    pids+=($!)
  done
  for i in "${!fns[@]}"; do
    fn=${fns[$i]}
    wait "${pids[$i]}"
    log "$fn (output of a block that ran beside others)"
    cat "$ROOT/build/logs/$fn.log"
    merge_state "$ROOT/build/logs/$fn.state" || record "$fn" 0 1 0
  done
  STEP_NAMES+=("$title (wall)") STEP_SECS+=($((SECONDS - start))) STEP_RESULTS+=(ok)
}

# dump_state: this shell's steps, cases and failure flag, one per line (S, C, F; tab-separated),
# which merge_state adds to another shell's.
dump_state() {
  local i
  for i in "${!STEP_NAMES[@]}"; do
    printf 'S\t%s\t%s\t%s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_RESULTS[$i]}"
  done
  for i in "${!CFG_NAMES[@]}"; do
    printf 'C\t%s\t%s\t%s\t%s\n' "${CFG_NAMES[$i]}" "${CFG_PASSED[$i]}" "${CFG_FAILED[$i]}" \
      "${CFG_SKIPPED[$i]}"
  done
  printf 'F\t%s\n' "$ANY_FAILURE"
}

# merge_state FILE: adds what dump_state wrote to FILE to this shell's steps and cases.
merge_state() {
  [[ -f $1 ]] || return 1
  local kind a b c d
  while IFS=$'\t' read -r kind a b c d; do
    case $kind in
      S) STEP_NAMES+=("$a") STEP_SECS+=("$b") STEP_RESULTS+=("$c")
         [[ $c == ok ]] || ANY_FAILURE=1 ;;
      C) record "$a" "$b" "$c" "$d" ;;
      F) ((a)) && ANY_FAILURE=1 ;;
    esac
  done <"$1"
  return 0
}

# The blocks (each a function of no argument, for `blocks`): each compiler's build, then its
# tests. The two run side by side, so g++'s tests, and after them the install checks and the
# fuzzer, run while clang still compiles (g++'s build is the shorter), instead of every test
# waiting for the slower build. A build failure counts as one failed case; the tests that did
# build still run (ninja -k 0).
gcc_chain() {
  build_preset gcc-debug
  test_preset gcc-debug
  install_and_fuzz
}
clang_chain() {
  build_preset clang-asan
  test_preset clang-asan
}

# Each of the two builds side by side gets half the jobs: four compilers on two cores took 23 %
# longer than two (cache and memory contention: 1496 s against 1215 s for the same TUs).
build_preset() {
  local jobs=$((JOBS / 2 > 0 ? JOBS / 2 : 1))
  step "$1: build" cmake --build --preset "$1" -j "$jobs" -- -k 0 || record "$1" 0 1 0
}

test_preset() {
  local dir="$ROOT/build/$1"
  rm -rf "$dir/test-results" "$dir/ctest-junit.xml"
  mkdir -p "$dir/test-results"
  step "$1: ctest" ctest --preset "$1" --output-on-failure -j "$TEST_JOBS" \
    --output-junit "$dir/ctest-junit.xml"
  count_ctest "$1" "$dir"
}

# install, the two consumers, the version check and the fuzzer: one block beside the tests.
install_and_fuzz() {
  if step "release: configure" cmake --preset release && step "install" install_step; then
    one_case install "install: find_package consumer" install_consumer package
  else
    record install 0 1 0
  fi
  one_case install "install: add_subdirectory consumer" install_consumer subdirectory
  one_case install "packages: versions agree" package_versions
  fuzz_all
}

# package_versions: conanfile.py and the vcpkg port state the version of version.hpp (which
# CMake's configure step already holds project(VERSION) to).
package_versions() {
  local want conan vcpkg rc=0
  want=$(header_version)
  conan=$(sed -n 's/^    version = "\([^"]*\)"$/\1/p' conanfile.py)
  vcpkg=$(sed -n 's/^ *"version-semver": "\([^"]*\)",\{0,1\}$/\1/p' ports/rediskit/vcpkg.json)
  if [[ $conan != "$want" ]]; then
    echo "error: conanfile.py says version '$conan', include/rediskit/version.hpp says $want" >&2
    rc=1
  fi
  if [[ $vcpkg != "$want" ]]; then
    echo "error: ports/rediskit/vcpkg.json says version-semver '$vcpkg'," \
         "include/rediskit/version.hpp says $want" >&2
    rc=1
  fi
  ((rc == 0)) && echo "conanfile.py, ports/rediskit/vcpkg.json and version.hpp: $want"
  return "$rc"
}

header_version() {
  sed -n 's/^#define REDISKIT_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
    include/rediskit/version.hpp | paste -sd.
}

# install_consumer MODE: tests/install_consumer against the installed package (MODE=package)
# or through add_subdirectory (MODE=subdirectory); builds and runs it, checks the version.
install_consumer() {
  local mode=$1 dir="$ROOT/build/consumer-$1" out launcher=()
  command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  rm -rf "$dir"
  cmake -S tests/install_consumer -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=g++ \
    -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" -DREDISKIT_CONSUMER_MODE="$mode" \
    -DREDISKIT_SOURCE_DIR="$ROOT" -DCMAKE_PREFIX_PATH="$ROOT/build/install" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DREDISKIT_EXPECTED_VERSION="$(header_version)" &&
    cmake --build "$dir" -j "$JOBS" &&
    out=$("$dir/app") || return 1
  echo "$out"
  if [[ $out != "rediskit $(header_version)"* ]]; then
    echo "error: the consumer printed '$out', expected 'rediskit $(header_version) ...'" >&2
    return 1
  fi
}

install_step() {
  rm -rf "$ROOT/build/install"
  cmake --install "$ROOT/build/release" --prefix "$ROOT/build/install"
}

readme_check() {
  local block
  block=$(mktemp)
  awk '!f && /^```cpp[[:space:]]*$/ {f = 1; next} f && /^```/ {exit} f {print}' README.md >"$block"
  if ! [[ -s $block ]]; then
    echo "error: README.md has no \`\`\`cpp code block; its first one must be examples/quick_start.cpp" >&2
    rm -f "$block"
    return 1
  fi
  if ! diff -u examples/quick_start.cpp "$block"; then
    echo "error: README.md's first \`\`\`cpp block differs from examples/quick_start.cpp" \
         "(diff above): run bash scripts/sync_readme_quick_start.sh" >&2
    rm -f "$block"
    return 1
  fi
  rm -f "$block"
  echo "README.md's first cpp block is examples/quick_start.cpp"
}

# run_fuzzer NAME: runs build/fuzz/NAME for FUZZ_SECONDS on a temporary copy of its corpus.
run_fuzzer() {
  local name=$1 dict=() work rc
  local seeds="tests/fuzz/corpus/${name%_fuzzer}" artifacts="$ROOT/build/fuzz/artifacts/$name/"
  work=$(mktemp -d)
  [[ -d $seeds ]] && cp -R "$seeds/." "$work/"
  [[ -f tests/fuzz/${name%_fuzzer}.dict ]] && dict=("-dict=$ROOT/tests/fuzz/${name%_fuzzer}.dict")
  mkdir -p "$artifacts"
  echo "$name: $(find "$work" -type f | wc -l) seed inputs, ${FUZZ_SECONDS}s"
  "$ROOT/build/fuzz/$name" -max_total_time="$FUZZ_SECONDS" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" "$work" \
    >"$ROOT/build/fuzz/$name.log" 2>&1
  rc=$?
  tail -n 25 "$ROOT/build/fuzz/$name.log"
  rm -rf "$work"
  ((rc == 0)) || echo "error: $name failed; reproducer and log in $artifacts, build/fuzz/$name.log" >&2
  return "$rc"
}

fuzz_all() {
  local sources=() src name passed=0 failed=0
  shopt -s nullglob
  sources=(tests/fuzz/*_fuzzer.cpp)
  shopt -u nullglob
  if ((${#sources[@]} == 0)); then
    echo "no tests/fuzz/*_fuzzer.cpp: nothing to fuzz"
    return
  fi
  if ! step "fuzz: configure" cmake --preset fuzz; then
    record fuzz 0 1 0
    return
  fi
  step "fuzz: build" cmake --build --preset fuzz -j "$JOBS" -- -k 0 || record fuzz 0 1 0
  for src in "${sources[@]}"; do
    name=$(basename "$src" .cpp)
    if step "fuzz: $name" run_fuzzer "$name"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
  record fuzz "$passed" "$failed" 0
}

one_case() {  # one_case CONFIG STEP-NAME CMD...: a step that counts as one test case
  local cfg=$1 name=$2
  shift 2
  if step "$name" "$@"; then record "$cfg" 1 0 0; else record "$cfg" 0 1 0; fi
}

summary() {
  local i total_passed=0 total_failed=0
  log "summary"
  printf '%-34s %7s  %s\n' step seconds result
  for i in "${!STEP_NAMES[@]}"; do
    printf '%-34s %7s  %s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_RESULTS[$i]}"
  done
  printf '%-34s %7s\n' "total" "$SECONDS"
  echo
  printf '%-14s %8s %8s %8s\n' configuration passed failed skipped
  for i in "${!CFG_NAMES[@]}"; do
    printf '%-14s %8s %8s %8s\n' "${CFG_NAMES[$i]}" "${CFG_PASSED[$i]}" "${CFG_FAILED[$i]}" \
      "${CFG_SKIPPED[$i]}"
    total_passed=$((total_passed + CFG_PASSED[i]))
    total_failed=$((total_failed + CFG_FAILED[i]))
  done
  # A failed step that counted no case (e.g. installing packages) must still show as a failure.
  if ((ANY_FAILURE && total_failed == 0)); then total_failed=1; fi
  echo
  echo "tests: $total_passed passed, $total_failed failed"
  ((total_failed == 0))
}

# The Node.js peers of the interop tests (tests/interop/package.json, exact versions): Node.js
# and npm from Debian when the machine has none, then npm ci (the npm registry).
interop_setup() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ensure_packages nodejs npm || return 1
  fi
  (cd "$ROOT/tests/interop" && npm ci --no-audit --no-fund --loglevel=error) &&
    (cd "$ROOT/examples/chat_server/tests" && npm ci --no-audit --no-fund --loglevel=error)
}

mode_test() {
  if ! step "install packages" ensure_packages "${TEST_PACKAGES[@]}"; then
    record packages 0 1 0
  fi
  if ! step "interop: npm ci" interop_setup; then
    record packages 0 1 0
  fi
  local chains=(install_and_fuzz)
  if step "gcc-debug: configure" cmake --preset gcc-debug; then
    chains=(gcc_chain)
  else
    record gcc-debug 0 1 0  # nothing ran: one failed case so it cannot look green
  fi
  if step "clang-asan: configure" cmake --preset clang-asan; then
    chains+=(clang_chain)
  else
    record clang-asan 0 1 0
  fi
  blocks "each compiler's build and tests, side by side" "${chains[@]}"
  one_case readme "readme: quick start block" readme_check
  summary
}

mode_example() {
  ensure_packages "${BUILD_PACKAGES[@]}" || exit 1
  cmake --preset release &&
    cmake --build --preset release -j "$JOBS" --target quick_start &&
    log "examples/quick_start" &&
    "$ROOT/build/release/examples/quick_start"
}

# The chat server on MemoryBackend (no Redis needed); it prints "listening on http://...".
mode_demo() {
  ensure_packages "${BUILD_PACKAGES[@]}" || exit 1
  cmake --preset release &&
    cmake --build --preset release -j "$JOBS" --target chat_server &&
    log "examples/chat_server: open the URL below in a browser; Ctrl-C stops it" &&
    exec "$ROOT/build/release/examples/chat_server/chat_server" "$@"
}

case "${1:-}" in
  example) mode_example ;;
  demo) shift; mode_demo "$@" ;;
  test) mode_test ;;
  *)
    echo "usage: bash scripts/run.sh example|demo|test" >&2
    exit 2
    ;;
esac
