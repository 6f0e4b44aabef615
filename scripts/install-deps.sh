#!/bin/bash
# Install the Debian 12 packages blockrepl needs to build and test, but only those missing.
# A fast no-op when everything is installed. Must run as root (or via sudo) when something is
# missing. Usage: scripts/install-deps.sh [--build-only | --bench]
# (--bench: also what tests/bench/ compares against: QEMU's storage daemon, rsync, perf.)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

BUILD_DEPS=(cmake ninja-build pkg-config g++ ccache libgrpc++-dev protobuf-compiler-grpc
  libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev libgtest-dev libgmock-dev
  libcli11-dev prometheus-cpp-dev libcivetweb-dev libsystemd-dev libxxhash-dev libzstd-dev liblz4-dev
  liburing-dev)
TEST_DEPS=(libnbd-bin python3-libnbd nbdkit qemu-utils fio curl socat delay procps prometheus
  python3-yaml systemd clang libclang-rt-14-dev)

BENCH_DEPS=(qemu-system-common qemu-utils rsync linux-perf valgrind pv)  # pv: wan_throughput.py

pkgs=("${BUILD_DEPS[@]}")
if [[ "${1:-}" != "--build-only" ]]; then
  pkgs+=("${TEST_DEPS[@]}")
fi
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=("${BENCH_DEPS[@]}")
fi

# One dpkg-query call for all packages (fast); packages dpkg has never heard of print nothing.
declare -A installed=()
while read -r name status; do
  [[ "$status" == "install ok installed" ]] && installed[${name%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
  [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing missing packages: ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  else
    echo "install-deps: not root and no sudo; install these as root: ${missing[*]}" >&2
    exit 1
  fi
fi
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
