#!/bin/bash
# Cost of the persistent write-intent bitmap (issue 3): fio 4 KiB random writes over NBD against
#   nbdkit  nbdkit's file plugin (the unreplicated peer reference)
#   mem     repl-primary (async) -> repl-secondary, --bitmap=memory,64K,SLEEP (bits in memory, no I/O)
#   bm64k   the same with a bitmap file, --bitmap=FILE,64K,SLEEP (the default chunk)
#   mem4k   --bitmap=memory,4K,SLEEP  (the baseline for bm4k: same chunk, so same RangeLock grain)
#   bm4k    --bitmap=FILE,4K,SLEEP    (worst case: 16x more bits, most writes hit a clean chunk)
# all in the same run, on sparse files in one temp dir, targets alternated within each round (round
# 2 runs them in reverse order) so that drifts hit all of them alike.
#
#   tests/bench/bitmap_overhead.sh
#
# Workloads (fio --ioengine=nbd, --randrepeat=1 --norandommap: every target gets the same offsets):
#   cold_qd32  4 KiB randwrite, QD 32, over the whole volume; every bit is clear at the start
#              (the script waits for the lazy clearing daemon), so writes keep hitting clean chunks
#   hot_qd32   4 KiB randwrite, QD 32, over the first BENCH_HOT_SPAN bytes, after a sequential
#              1 MiB pass over that span, so the bits are already set (the steady state of a
#              small working set)
#   cold_qd1   4 KiB randwrite, QD 1, whole volume, bits clear (no concurrent writer to share a
#              bitmap flush with: each write to a clean chunk waits for its own fdatasync)
# For every repl target it reads bitmap_flushes_total and replicated_writes_total (replctl status
# --json) right before and right after each fio run and prints flushes per 1000 writes (the
# counter also counts lazy-clearing flushes inside the run; with --bitmap=memory a "flush" writes
# nothing).
#
# Env: BENCH_RUNTIME     seconds per fio run (default 15)
#      BENCH_RAMP        fio ramp seconds (default 0: the cold start is part of the cost)
#      BENCH_ROUNDS      rounds of (every workload x every target) (default 1)
#      BENCH_SIZE        volume / backing file size (default 1G)
#      BENCH_HOT_SPAN    span of hot_qd32 (default 64M)
#      BENCH_SLEEP       bitmap DAEMON_SLEEP_S for every repl target (default 5)
#      BENCH_TARGETS     subset of "nbdkit mem bm64k mem4k bm4k" (default all)
#      BENCH_WORKLOADS   subset of "cold_qd32 hot_qd32 cold_qd1" (default all)
#      BENCH_PREALLOC=1  fallocate the backing files instead of leaving them sparse
#      BENCH_FSYNC_PROBE 0 = skip the 5 s fdatasync latency probe of the temp dir's disk
#      BENCH_KEEP=1      keep the temp dir (fio JSON, counters, logs)
#      BLOCKREPL_BIN     binaries (default <repo>/build/bin)
# Prints a table (IOPS, mean per-second IOPS in the first 5 s and after, p50/p99 completion
# latency in us, IOPS ratio to the in-memory bitmap with the same chunk size (target >= 0.9x) and
# to nbdkit, flushes per 1000 writes; means over rounds), then checks that each replica equals
# its primary. Every process is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BLOCKREPL_BIN:-$ROOT/build/bin}
RUNTIME=${BENCH_RUNTIME:-15}
RAMP=${BENCH_RAMP:-0}
ROUNDS=${BENCH_ROUNDS:-1}
SIZE=${BENCH_SIZE:-1G}
HOT_SPAN=${BENCH_HOT_SPAN:-64M}
SLEEP_S=${BENCH_SLEEP:-5}
read -ra TARGETS <<<"${BENCH_TARGETS:-nbdkit mem bm64k mem4k bm4k}"
read -ra WORKLOAD_NAMES <<<"${BENCH_WORKLOADS:-cold_qd32 hot_qd32 cold_qd1}"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
bench_require fio nbdkit truncate fallocate cmp
bench_setup

wait_bits_clear() {  # wait_bits_clear ADMIN_SOCKET TIMEOUT_S: the lazy clearing daemon is done
  local deadline=$((SECONDS + $2)) n
  while :; do
    n=$(vol_fields "$1" bitmap_bits_set)
    [[ $n == 0 ]] && return 0
    ((SECONDS < deadline)) || { echo "bench: $1 still has $n bits set after $2 s" >&2; return 1; }
    sleep 0.5
  done
}

for t in "${TARGETS[@]}"; do
  case $t in
    nbdkit) start_nbdkit ;;
    mem) start_pair mem --bitmap="memory,65536,$SLEEP_S" ;;
    bm64k) start_pair bm64k --bitmap="$DIR/bm64k.bitmap,65536,$SLEEP_S" ;;
    mem4k) start_pair mem4k --bitmap="memory,4096,$SLEEP_S" ;;
    bm4k) start_pair bm4k --bitmap="$DIR/bm4k.bitmap,4096,$SLEEP_S" ;;
    *) echo "bench: unknown target $t" >&2; exit 2 ;;
  esac
done

declare -A WARGS=(
  [cold_qd32]="--rw=randwrite --bs=4k --iodepth=32 --randrepeat=1 --norandommap --size=$SIZE"
  [hot_qd32]="--rw=randwrite --bs=4k --iodepth=32 --randrepeat=1 --norandommap --size=$HOT_SPAN"
  [cold_qd1]="--rw=randwrite --bs=4k --iodepth=1 --randrepeat=1 --norandommap --size=$SIZE")
for w in "${WORKLOAD_NAMES[@]}"; do
  [[ -n ${WARGS[$w]:-} ]] || { echo "bench: unknown workload $w" >&2; exit 2; }
done

echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNTIME s per run" \
  "(ramp $RAMP s), $ROUNDS round(s), size $SIZE ($( [[ ${BENCH_PREALLOC:-0} == 0 ]] && echo sparse || echo preallocated) files), hot span $HOT_SPAN, daemon sleep $SLEEP_S s, dir $DIR"
if [[ ${BENCH_FSYNC_PROBE:-1} != 0 ]]; then
  # What one bitmap flush costs at least: overwrite 4 KiB of a preallocated file + fdatasync.
  fio --name=probe --filename="$DIR/fsync-probe" --size=64k --bs=4k --rw=randwrite \
    --ioengine=psync --fdatasync=1 --time_based --runtime=5 --output-format=json \
    --output="$DIR/fsync-probe.json" >"$DIR/fsync-probe.log" 2>&1 &&
    "$PY" -c 'import json,sys
j = json.load(open(sys.argv[1]))["jobs"][0]; s = j["sync"]; p = s["lat_ns"].get("percentile", {})
print("bench: fdatasync probe (4 KiB overwrite + fdatasync in %s): %.0f per s, fdatasync p50 %.0f us, p99 %.0f us"
      % (sys.argv[2], j["write"]["iops"], p.get("50.000000", 0) / 1e3, p.get("99.000000", 0) / 1e3))' \
      "$DIR/fsync-probe.json" "$DIR" ||
    echo "bench: fdatasync probe failed (see $DIR/fsync-probe.log)"
  rm -f "$DIR/fsync-probe"
fi

for ((r = 1; r <= ROUNDS; r++)); do
  for wname in "${WORKLOAD_NAMES[@]}"; do
    wargs=${WARGS[$wname]}
    # alternate the target order from round to round
    order=("${TARGETS[@]}")
    ((r % 2 == 0)) && mapfile -t order < <(printf '%s\n' "${TARGETS[@]}" | tac)
    for t in "${order[@]}"; do
      out=$DIR/fio-$wname-$t-r$r.json
      if [[ $t != nbdkit ]]; then
        wait_in_sync "${ADMIN[$t]}" 120
        if [[ $wname == cold_* ]]; then
          # every bit clear: the lazy clearing daemon needs 2 idle periods
          wait_bits_clear "${ADMIN[$t]}" $((4 * SLEEP_S + 60))
        fi
      fi
      if [[ $wname == hot_* ]]; then
        # set the span's bits first (and fill the span on every target alike)
        fio --name=warmup --ioengine=nbd --uri="${URI[$t]}" --rw=write --bs=1M --iodepth=8 \
          --size="$HOT_SPAN" >"$DIR/warmup-$wname-$t-r$r.log" 2>&1 ||
          { echo "bench: warm-up fio failed for $t:" >&2; cat "$DIR/warmup-$wname-$t-r$r.log" >&2; exit 1; }
        [[ $t == nbdkit ]] || wait_in_sync "${ADMIN[$t]}" 120
      fi
      before=""
      [[ $t == nbdkit ]] || before=$(vol_fields "${ADMIN[$t]}" bitmap_flushes_total replicated_writes_total bitmap_bits_set)
      # shellcheck disable=SC2086
      fio --name="$wname" --ioengine=nbd --uri="${URI[$t]}" $wargs \
        --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --output-format=json --output="$out" \
        --write_iops_log="$DIR/iops-$wname-$t-r$r" --log_avg_msec=1000 \
        >"$DIR/fio-$wname-$t-r$r.log" 2>&1 ||
        { echo "bench: fio failed for $t/$wname:" >&2; cat "$DIR/fio-$wname-$t-r$r.log" >&2; exit 1; }
      extra=""
      if [[ $t != nbdkit ]]; then
        after=$(vol_fields "${ADMIN[$t]}" bitmap_flushes_total replicated_writes_total bitmap_bits_set)
        echo "$before $after" >"$DIR/bm-$wname-$t-r$r.txt"
        read -r f0 w0 b0 f1 w1 b1 <<<"$before $after"
        extra=$("$PY" -c 'import sys; f0,w0,b0,f1,w1,b1=map(int,sys.argv[1:])
print(", %d bitmap flushes / %d writes = %.1f per 1000 writes, bits set %d -> %d"
      % (f1-f0, w1-w0, 1000.0*(f1-f0)/max(w1-w0,1), b0, b1))' $f0 $w0 $b0 $f1 $w1 $b1)
      fi
      echo "  round $r $wname $t: $("$PY" -c 'import json,sys; w=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print("%.0f IOPS" % w["iops"])' "$out")$extra"
      # let the replica catch up before the next run, so runs do not overlap
      [[ $t == nbdkit ]] || wait_in_sync "${ADMIN[$t]}" 120
    done
  done
done

"$PY" - "$DIR" "${TARGETS[@]}" -- "${WORKLOAD_NAMES[@]}" <<'EOF'
import glob, json, os, statistics, sys
d = sys.argv[1]
sep = sys.argv.index("--")
targets, workloads = sys.argv[2:sep], sys.argv[sep + 1:]
rows, flushes = {}, {}
for f in sorted(glob.glob(os.path.join(d, "fio-*.json"))):
    _, wname, t, _ = os.path.basename(f)[:-5].split("-")
    j = json.load(open(f))["jobs"][0]
    w = j["write"]
    p = w["clat_ns"].get("percentile", {})
    # per-second IOPS: the first 5 s (most bits get set then, in the cold runs) and the rest
    first = rest = (0, 0)
    for log in glob.glob(os.path.join(d, f"iops-{wname}-{t}-{os.path.basename(f)[:-5].split('-')[3]}_iops*.log")):
        for line in open(log):
            ms, v = (int(x) for x in line.split(",")[:2])
            if ms <= 5500:  # fio stamps the windows a few ms late
                first = (first[0] + v, first[1] + 1)
            else:
                rest = (rest[0] + v, rest[1] + 1)
    rows.setdefault((wname, t), []).append(
        (w["iops"], p.get("50.000000", 0) / 1e3, p.get("99.000000", 0) / 1e3,
         first[0] / first[1] if first[1] else 0, rest[0] / rest[1] if rest[1] else 0))
    bm = f[:-5].replace("/fio-", "/bm-") + ".txt"
    if os.path.exists(bm):
        f0, w0, b0, f1, w1, b1 = map(int, open(bm).read().split())
        flushes.setdefault((wname, t), []).append((f1 - f0, w1 - w0, b1))
label = {"nbdkit": "nbdkit file", "mem": "bitmap=memory, 64K", "bm64k": "bitmap file, 64K",
         "mem4k": "bitmap=memory, 4K", "bm4k": "bitmap file, 4K"}
baseline = {"mem": "mem", "bm64k": "mem", "mem4k": "mem4k", "bm4k": "mem4k" if "mem4k" in targets else "mem"}
mean_iops = lambda key: statistics.mean(r[0] for r in rows[key]) if key in rows else None
multi = max(len(v) for v in rows.values()) > 1
print()
print("| workload | target | IOPS | IOPS 0-5 s / after | p50 us | p99 us | vs no-bitmap file | vs nbdkit |"
      " flushes / 1000 writes | bits set after |" + (" IOPS per round |" if multi else ""))
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if multi else ""))
verdicts = []
for wname in workloads:
    base_nbdkit = mean_iops((wname, "nbdkit"))
    for t in targets:
        rs = rows.get((wname, t))
        if not rs:
            continue
        iops, p50, p99, first, rest = (statistics.mean(r[i] for r in rs) for i in range(5))
        b = baseline.get(t)
        base = mean_iops((wname, b)) if b else None
        vs_mem = f"{iops / base:.2f}x" if base and b != t else ("1.00x" if b == t else "-")
        if base and b != t:
            verdicts.append(f"{wname} {label[t]}: {iops / base:.2f}x of {label[b]} -> "
                            + ("meets" if iops / base >= 0.9 else "MISSES") + " the >= 0.9x target")
        vs_nbdkit = f"{iops / base_nbdkit:.2f}x" if base_nbdkit else "-"
        fl = flushes.get((wname, t))
        if fl:
            nf, nw = sum(x[0] for x in fl), sum(x[1] for x in fl)
            per1000 = f"{1000.0 * nf / max(nw, 1):.1f} ({nf}/{nw})"
            bits = " / ".join(str(x[2]) for x in fl)
        else:
            per1000 = bits = "-"
        per = " " + " / ".join(f"{r[0]:.0f}" for r in rs) + " |" if multi else ""
        split = f"{first:.0f} / {rest:.0f}" if first and rest else "-"
        print(f"| {wname} | {label.get(t, t)} | {iops:.0f} | {split} | {p50:.0f} | {p99:.0f} |"
              f" {vs_mem} | {vs_nbdkit} |"
              f" {per1000} | {bits} |" + per)
print()
for v in verdicts:
    print("target (bitmap file >= 0.9x of in-memory bitmap):", v)
EOF

status=0
for t in mem bm64k mem4k bm4k; do
  [[ -n ${ADMIN[$t]:-} ]] || continue
  wait_in_sync "${ADMIN[$t]}" 120
  if cmp "${PSTORE[$t]}" "${SSTORE[$t]}"; then
    read -r pw pb fl <<<"$(vol_fields "${ADMIN[$t]}" peak_inflight_writes peak_inflight_bytes bitmap_flushes_total)"
    echo "replica check ($t): secondary store == primary store ($SIZE); peak in flight $pw writes /" \
      "$pb bytes; $fl bitmap flushes since start"
  else
    echo "replica check ($t): FAILED, the stores differ" >&2; status=1
  fi
done
exit $status
