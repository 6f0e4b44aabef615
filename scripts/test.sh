#!/bin/bash
# README command 2: install missing deps, build, run every test (unit + e2e) with CTest.
# Usage: scripts/test.sh [extra ctest args, e.g. -R e2e_window or -L e2e]
# Env: CTEST_TIMEOUT (default per-test timeout for tests without their own, 300 s),
#      CTEST_PARALLEL (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/install-deps.sh
scripts/build.sh
exec ctest --test-dir "$ROOT/build" --output-on-failure -j"${CTEST_PARALLEL:-2}" \
  --timeout "${CTEST_TIMEOUT:-300}" "$@"
