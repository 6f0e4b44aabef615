#!/bin/bash
# README command 2: install missing deps, build, run every test (unit + e2e) with CTest; then the
# same tests on two clang sanitizer builds, and the fuzzers:
#   build/        g++, RelWithDebInfo: every test;
#   build-asan/   clang, ASan + UBSan (+ libFuzzer coverage): every unit test again and its
#                 share of the e2e/consistency tests (memory errors, leaks, undefined behaviour
#                 abort the binaries, so the tests fail), the fuzzers' seed replays, then
#                 scripts/fuzz.sh: each fuzzer for FUZZ_SECONDS (30);
#   build-tsan/   clang, TSan: every unit test again and the other share of the e2e/consistency
#                 tests (data races fail them); both clang builds also check the thread-safety
#                 annotations (-Werror=thread-safety). Which sanitizer runs which process-level
#                 test: tests/CMakeLists.txt (labels asan-share, tsan-share; SAN_ALL=1 runs every
#                 test under both, as CI did before it outgrew 30 minutes on a slow host).
# Usage: scripts/test.sh [extra ctest args, e.g. -R e2e_window or -L e2e; then every selected
#        test runs under both sanitizers]
# Env: CTEST_TIMEOUT (default per-test timeout for tests without their own, 300 s),
#      CTEST_PARALLEL (default 2), SANITIZE=0 to skip the sanitizer builds and fuzzing,
#      FUZZ_SECONDS (default 30; 0 skips fuzzing), SAN_ALL=1 (above).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/install-deps.sh
scripts/build.sh
run_ctest() {  # run_ctest BUILD_DIR [ctest args]
  local dir=$1
  shift
  ctest --test-dir "$dir" --output-on-failure -j"${CTEST_PARALLEL:-2}" \
    --timeout "${CTEST_TIMEOUT:-300}" "$@"
}
configure_clang() {  # configure_clang BUILD_DIR CMAKE_ARGS...: once; clang++ for the sanitizers
  local dir=$1
  shift
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    CXX=clang++ cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  fi
}
section() { echo; echo "==== test.sh: $* ($(date +%T))"; }

section "g++ build: every test"
run_ctest "$ROOT/build" "$@"
[[ ${SANITIZE:-1} != 0 ]] || exit 0

section "ASan + UBSan build (clang, build-asan/): unit tests, its e2e share, fuzzer seed replays"
configure_clang "$ROOT/build-asan" -DBLOCKREPL_SANITIZE=address,undefined -DBLOCKREPL_FUZZ=ON
BUILD_DIR="$ROOT/build-asan" scripts/build.sh
# With no ctest args, each sanitizer skips the other's share of the process-level tests.
asan_skips=() tsan_skips=()
if [[ $# -eq 0 && ${SAN_ALL:-0} != 1 ]]; then
  asan_skips=(-LE tsan-share)
  tsan_skips=(-LE asan-share)
fi
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} \
  run_ctest "$ROOT/build-asan" "${asan_skips[@]}" "$@"
if [[ ${FUZZ_SECONDS:-30} != 0 && $# -eq 0 ]]; then
  section "fuzzing: each target ${FUZZ_SECONDS:-30} s"
  FUZZ_BUILD_DIR="$ROOT/build-asan" scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi

section "TSan build (clang, build-tsan/): unit tests, its e2e share"
configure_clang "$ROOT/build-tsan" -DBLOCKREPL_SANITIZE=thread
BUILD_DIR="$ROOT/build-tsan" scripts/build.sh
run_ctest "$ROOT/build-tsan" "${tsan_skips[@]}" "$@"
section "all passed"
