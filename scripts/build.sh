#!/bin/bash
# Configure (if needed) and build blockrepl into build/ with Ninja (RelWithDebInfo).
# Serialised with flock so two builds never overlap on this 2-core machine.
# Usage: scripts/build.sh [extra cmake --build args, e.g. --target repl-primary]
# Env: BUILD_DIR (default <repo>/build), BUILD_TYPE (default RelWithDebInfo).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
LOCK=/tmp/blockrepl-build.lock

exec 9>>"$LOCK"
if ! flock -n 9; then
  echo "build.sh: waiting for another build to finish ($LOCK)..." >&2
  flock 9
fi

if [[ ! -f "$BUILD_DIR/build.ninja" || ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
fi
cmake --build "$BUILD_DIR" "$@"
