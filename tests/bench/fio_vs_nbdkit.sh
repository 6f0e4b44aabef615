#!/bin/bash
# fio against (a) nbdkit's file plugin, (b) repl-primary replicating asynchronously to a local
# repl-secondary, (c) repl-primary in --sync mode. Same kind of backing file for all (a sparse
# 1 GiB file in one temp dir), same fio jobs, targets alternated within each round so that
# drifts (page cache, CPU boost) hit all of them alike.
#
#   tests/bench/fio_vs_nbdkit.sh
#
# Env: BENCH_RUNTIME   seconds per fio run (default 20)
#      BENCH_ROUNDS    rounds of (every workload x every target) (default 1)
#      BENCH_SIZE      backing file / volume size (default 1G)
#      BENCH_TARGETS   subset of "nbdkit async sync zstd lz4 nocsum" (default: nbdkit async sync;
#                      zstd/lz4 = async with --compress, for the incompressible-data overhead;
#                      nocsum = async with --checksum=none, for the cost of the XXH3 checksum)
#      BENCH_KEEP=1    keep the temp dir (fio JSON, logs)
#      BLOCKREPL_BIN   binaries (default <repo>/build/bin)
# Prints a table (MB/s, IOPS, p50/p99 completion latency in us, ratio to nbdkit; means over
# rounds, IOPS ratio), then checks
# that each replica equals its primary. Every process is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BLOCKREPL_BIN:-$ROOT/build/bin}
RUNTIME=${BENCH_RUNTIME:-20}
ROUNDS=${BENCH_ROUNDS:-1}
SIZE=${BENCH_SIZE:-1G}
TARGETS=(${BENCH_TARGETS:-nbdkit async sync})
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
bench_require fio nbdkit truncate cmp
bench_setup

for t in "${TARGETS[@]}"; do
  case $t in
    nbdkit) start_nbdkit ;;
    async) start_pair async ;;
    sync) start_pair sync --sync ;;
    zstd) start_pair zstd --compress=zstd ;;  # fio's data is random: measures the cost
    lz4) start_pair lz4 --compress=lz4 ;;     # of trying to compress incompressible data
    nocsum) start_pair nocsum --checksum=none ;;  # async without the per-payload XXH3
    *) echo "bench: unknown target $t" >&2; exit 2 ;;
  esac
done

WORKLOADS=("seq1M_qd8:--rw=write --bs=1M --iodepth=8"
           "rand4K_qd32:--rw=randwrite --bs=4k --iodepth=32 --randrepeat=1 --norandommap")
echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNTIME s per run, $ROUNDS round(s), size $SIZE, dir $DIR"
for ((r = 1; r <= ROUNDS; r++)); do
  for w in "${WORKLOADS[@]}"; do
    wname=${w%%:*}; wargs=${w#*:}
    # alternate the target order from round to round
    order=("${TARGETS[@]}")
    ((r % 2 == 0)) && order=($(printf '%s\n' "${TARGETS[@]}" | tac))
    for t in "${order[@]}"; do
      out=$DIR/fio-$wname-$t-r$r.json
      # shellcheck disable=SC2086
      fio --name="$wname" --ioengine=nbd --uri="${URI[$t]}" $wargs --size="$SIZE" \
        --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json --output="$out" \
        >"$DIR/fio-$wname-$t-r$r.log" 2>&1 ||
        { echo "bench: fio failed for $t/$wname:" >&2; cat "$DIR/fio-$wname-$t-r$r.log" >&2; exit 1; }
      echo "  round $r $wname $t: $("$PY" -c 'import json,sys; w=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print("%.0f MB/s %.0f IOPS" % (w["bw_bytes"]/1e6, w["iops"]))' "$out")"
      if [[ $t != nbdkit ]]; then
        # let the replica catch up before the next run, so runs do not overlap
        wait_in_sync "${ADMIN[$t]}" 120
      fi
    done
  done
done

"$PY" - "$DIR" "${TARGETS[@]}" <<'EOF'
import glob, json, os, statistics, sys
d, targets = sys.argv[1], sys.argv[2:]
rows = {}
for f in sorted(glob.glob(os.path.join(d, "fio-*.json"))):
    _, wname, t, _ = os.path.basename(f)[:-5].split("-")
    w = json.load(open(f))["jobs"][0]["write"]
    p = w["clat_ns"].get("percentile", {})
    rows.setdefault((wname, t), []).append(
        (w["bw_bytes"] / 1e6, w["iops"], p.get("50.000000", 0) / 1e3, p.get("99.000000", 0) / 1e3))
label = {"nbdkit": "nbdkit file", "async": "repl-primary async", "sync": "repl-primary --sync",
         "zstd": "async --compress=zstd", "lz4": "async --compress=lz4",
         "nocsum": "async --checksum=none"}
print()
multi = max(len(v) for v in rows.values()) > 1
print("| workload | target | MB/s | IOPS | p50 us | p99 us | vs nbdkit |"
      + (" MB/s per round |" if multi else ""))
print("|---|---|---:|---:|---:|---:|---:|" + ("---|" if multi else ""))
for wname in ("seq1M_qd8", "rand4K_qd32"):
    base = rows.get((wname, "nbdkit"))
    base_iops = statistics.mean(r[1] for r in base) if base else None
    for t in targets:
        rs = rows.get((wname, t))
        if not rs:
            continue
        mb, iops, p50, p99 = (statistics.mean(r[i] for r in rs) for i in range(4))
        ratio = f"{iops / base_iops:.2f}x" if base_iops else "-"
        per = " " + " / ".join(f"{r[0]:.0f}" for r in rs) + " |" if multi else ""
        print(f"| {wname} | {label.get(t, t)} | {mb:.0f} | {iops:.0f} | {p50:.0f} | {p99:.0f} | {ratio} |"
              + per)
EOF

status=0
for t in "${TARGETS[@]}"; do
  [[ -n ${ADMIN[$t]:-} ]] || continue  # nbdkit: nothing to compare
  wait_in_sync "${ADMIN[$t]}" 120
  if cmp "${PSTORE[$t]}" "${SSTORE[$t]}"; then
    echo "replica check ($t): secondary store == primary store ($SIZE); peak in flight" \
      "$(vol_fields "${ADMIN[$t]}" peak_inflight_writes) writes /" \
      "$(vol_fields "${ADMIN[$t]}" peak_inflight_bytes) bytes"
  else
    echo "replica check ($t): FAILED, the stores differ" >&2; status=1
  fi
done
exit $status
