#!/bin/bash
# README command 2: install missing deps, build, run every test (unit + e2e) with CTest; then
# the same tests again on an ASan + UBSan build (build-asan/: memory errors, leaks, undefined
# behaviour abort the binaries, so the tests fail).
# Usage: scripts/test.sh [extra ctest args, e.g. -R e2e_window or -L e2e]
# Env: CTEST_TIMEOUT (default per-test timeout for tests without their own, 300 s),
#      CTEST_PARALLEL (default 2), SANITIZE=0 to skip the sanitizer pass.
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
run_ctest "$ROOT/build" "$@"
if [[ ${SANITIZE:-1} != 0 ]]; then
  echo "test.sh: the same tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  if [[ ! -f "$ROOT/build-asan/CMakeCache.txt" ]]; then
    cmake -S "$ROOT" -B "$ROOT/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBLOCKREPL_SANITIZE=address,undefined >/dev/null
  fi
  BUILD_DIR="$ROOT/build-asan" scripts/build.sh
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} run_ctest "$ROOT/build-asan" "$@"
fi
