#!/bin/bash
# Runs each libFuzzer target for a while, starting from its seeds (tests/fuzz/corpus/<target>/)
# plus the inputs that once crashed it (tests/fuzz/regressions/<target>/), two at a time (one per
# core). A crash, leak, timeout or sanitizer report fails the run; the input that caused it is
# kept as <workdir>/<target>/crash-... and the fuzzer's log tail is printed. The tree is never
# modified: new corpus entries go to the work directory (copy good ones into corpus/ by hand).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
# Env:   FUZZ_BUILD_DIR (default <repo>/build-asan, configured with -DBLOCKREPL_FUZZ=ON and clang;
#        scripts/test.sh does that), FUZZ_WORKDIR (default a new temp dir, kept on failure),
#        FUZZ_JOBS (targets run at once, default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_PER_TARGET=${1:-60}
shift || true
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-asan}
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  TARGETS=(nbd_session_fuzzer replica_stream_fuzzer bitmap_file_fuzzer config_file_fuzzer)
fi
WORK=${FUZZ_WORKDIR:-$(mktemp -d /tmp/blockrepl-fuzz.XXXXXX)}
JOBS=${FUZZ_JOBS:-2}

# Largest input per target: room for a bitmap file of a few pages, a few NBD requests with
# payload, a hello and a couple of batches, a config file of several volumes.
max_len() {
  case $1 in
    bitmap_file_fuzzer) echo 20000 ;;  # 2 header slots + pages of a 16 MiB volume, and more
    nbd_session_fuzzer | replica_stream_fuzzer) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

run_one() {  # run_one TARGET: 0 when the fuzzer ran its time without finding anything
  local t=$1 bin=$BUILD/fuzz/$1 dir=$WORK/$1
  mkdir -p "$dir/corpus"
  local inputs=("$dir/corpus" "$ROOT/tests/fuzz/corpus/$t")
  [[ -d $ROOT/tests/fuzz/regressions/$t ]] && inputs+=("$ROOT/tests/fuzz/regressions/$t")
  # ASan/UBSan: report and stop at the first error; LeakSanitizer on (libFuzzer reports leaks).
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$dir/" \
      "${inputs[@]}" >"$dir/log" 2>&1
}

for t in "${TARGETS[@]}"; do
  if [[ ! -x $BUILD/fuzz/$t ]]; then
    echo "fuzz.sh: $BUILD/fuzz/$t not built (configure with CXX=clang++ -DBLOCKREPL_FUZZ=ON)" >&2
    exit 2
  fi
done

echo "fuzz.sh: ${#TARGETS[@]} targets x ${SECONDS_PER_TARGET} s, $JOBS at a time, work dir $WORK"
declare -A pids=()
failed=()
wait_one() {  # waits for any running target and forgets it (results are judged from logs)
  local done_pid name
  wait -n -p done_pid || true
  for name in "${!pids[@]}"; do
    if [[ ${pids[$name]} == "$done_pid" ]]; then unset "pids[$name]"; fi
  done
}
for t in "${TARGETS[@]}"; do
  while [[ ${#pids[@]} -ge $JOBS ]]; do wait_one; done
  ( run_one "$t" ) &
  pids[$t]=$!
done
while [[ ${#pids[@]} -gt 0 ]]; do wait_one; done

for t in "${TARGETS[@]}"; do
  log=$WORK/$t/log
  stats=$(grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$log" | tr -s ' \n' ' ' || true)
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*" "$log" | tail -1 || true)
  if compgen -G "$WORK/$t/crash-*" >/dev/null || compgen -G "$WORK/$t/leak-*" >/dev/null ||
     compgen -G "$WORK/$t/timeout-*" >/dev/null || compgen -G "$WORK/$t/oom-*" >/dev/null ||
     ! grep -q "^Done [0-9]* runs" "$log"; then
    failed+=("$t")
    echo "fuzz.sh: $t FAILED; input(s): $(ls "$WORK/$t" | grep -E '^(crash|leak|timeout|oom)-' | tr '\n' ' ')"
    tail -60 "$log"
  else
    echo "fuzz.sh: $t ok: $cov ${stats}"
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (work dir kept: $WORK). Fix the bug, then add the input to"
  echo "         tests/fuzz/regressions/<target>/ so CTest replays it from now on."
  exit 1
fi
[[ -n ${FUZZ_WORKDIR:-} ]] || rm -rf "$WORK"
echo "fuzz.sh: all ${#TARGETS[@]} targets ran ${SECONDS_PER_TARGET} s each without a finding"
