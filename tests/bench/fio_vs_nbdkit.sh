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
#      BENCH_TARGETS   subset of "nbdkit async sync zstd lz4" (default: nbdkit async sync;
#                      zstd/lz4 = async with --compress, for the incompressible-data overhead)
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
PY=/usr/bin/python3
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

for t in fio nbdkit truncate cmp; do
  command -v $t >/dev/null || { echo "bench: missing tool $t (scripts/install-deps.sh)" >&2; exit 77; }
done
for b in repl-primary repl-secondary replctl; do
  [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b missing (scripts/build.sh)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/blockrepl-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n ${BENCH_KEEP:-} ]]; then echo "bench: kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # wait until something listens on 127.0.0.1:$1 (10 s; reads /proc, no connect)
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "^ *[0-9]*: [0-9A-F]*:$(printf '%04X' "$1") [0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 \
      2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on port $1" >&2; return 1
}
vol_field() {  # vol_field ADMIN_SOCKET FIELD
  "$BIN/replctl" --admin-socket="$1" status --json |
    "$PY" -c "import json,sys; print(json.load(sys.stdin)['volumes'][0]['$2'])"
}
wait_in_sync() {  # wait_in_sync ADMIN_SOCKET TIMEOUT_S
  local deadline=$((SECONDS + $2)) s
  while :; do
    s=$("$BIN/replctl" --admin-socket="$1" status --json 2>/dev/null |
        "$PY" -c 'import json,sys; v=json.load(sys.stdin)["volumes"][0]; print(v["connection"], v["sync_state"], v["dirty_chunks"], v["inflight_writes"])' 2>/dev/null || echo unreachable)
    [[ $s == "connected in_sync 0 0" ]] && return 0
    ((SECONDS < deadline)) || { echo "bench: $1 not in_sync after $2 s: $s" >&2; return 1; }
    sleep 0.2
  done
}

declare -A URI ADMIN PSTORE SSTORE
start_nbdkit() {
  local port; port=$(free_port)
  truncate -s "$SIZE" "$DIR/nbdkit.img"
  nbdkit -f -i 127.0.0.1 -p "$port" file "$DIR/nbdkit.img" >"$DIR/nbdkit.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$port"
  URI[nbdkit]=nbd://127.0.0.1:$port/
}
start_pair() {  # start_pair NAME [primary flags...]
  local name=$1; shift
  local sport nport; sport=$(free_port); nport=$(free_port)
  truncate -s "$SIZE" "$DIR/$name-primary.img" "$DIR/$name-secondary.img"
  "$BIN/repl-secondary" --volume="$name" --store="$DIR/$name-secondary.img" \
    --listen="127.0.0.1:$sport" --admin-socket="$DIR/$name-secondary.sock" \
    >"$DIR/$name-secondary.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$sport"
  "$BIN/repl-primary" --volume="$name" --store="$DIR/$name-primary.img" \
    --secondary="127.0.0.1:$sport" --nbd-listen="127.0.0.1:$nport" \
    --admin-socket="$DIR/$name-primary.sock" --assume-clean "$@" \
    >"$DIR/$name-primary.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$nport"
  ADMIN[$name]=$DIR/$name-primary.sock
  PSTORE[$name]=$DIR/$name-primary.img
  SSTORE[$name]=$DIR/$name-secondary.img
  wait_in_sync "${ADMIN[$name]}" 30
  URI[$name]=nbd://127.0.0.1:$nport/$name
}

for t in "${TARGETS[@]}"; do
  case $t in
    nbdkit) start_nbdkit ;;
    async) start_pair async ;;
    sync) start_pair sync --sync ;;
    zstd) start_pair zstd --compress=zstd ;;  # fio's data is random: measures the cost
    lz4) start_pair lz4 --compress=lz4 ;;     # of trying to compress incompressible data
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
label = {"nbdkit": "nbdkit file", "async": "repl-primary async", "sync": "repl-primary --sync"}
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
for t in async sync zstd lz4; do
  [[ -n ${ADMIN[$t]:-} ]] || continue
  wait_in_sync "${ADMIN[$t]}" 120
  if cmp "${PSTORE[$t]}" "${SSTORE[$t]}"; then
    echo "replica check ($t): secondary store == primary store ($SIZE); peak in flight" \
      "$(vol_field "${ADMIN[$t]}" peak_inflight_writes) writes /" \
      "$(vol_field "${ADMIN[$t]}" peak_inflight_bytes) bytes"
  else
    echo "replica check ($t): FAILED, the stores differ" >&2; status=1
  fi
done
exit $status
