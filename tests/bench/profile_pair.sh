#!/bin/bash
# Where a replicated write's CPU goes (docs/PERFORMANCE.md, round 4): one repl-primary ->
# repl-secondary pair (or an unreplicated primary), one fio workload over NBD, and while it runs,
# for each agent: `perf stat --per-thread` (CPU, context switches, summed by thread name), uprobe
# counts of Replicator::Submit and Applier::ApplyBatch (writes per stream message), and
# `perf record -g` (left in the kept dir for `perf report`).
#
#   tests/bench/profile_pair.sh [BS [QD [MODE]]]      defaults: 4k 32 async; MODE async|sync|off
#
# BENCH_PIN=1 emulates the two machines DRBD-style figures assume: the secondary alone on CPU 1,
# the primary and fio on CPU 0 (for MODE off too, so on/off compare the same core).
#
# Env: RW (fio --rw, default randwrite), BENCH_SIZE (1G), BENCH_RUNTIME (14 s; 8 s are sampled from
# second 4), BIN (build/bin), BENCH_KEEP=1 keeps the dir with the perf data, BENCH_PRIMARY_ARGS
# (more repl-primary flags, e.g. --batch-linger=0.001), BENCH_SECONDARY_ARGS (more repl-secondary
# flags, e.g. --store-io=direct), BENCH_PROBES=0 (no uprobes: each costs
# an int3 trap per call, about 12% of the NBD workers' time on round 11's PVM guest),
# BENCH_CALLGRAPH=dwarf (user stacks through libraries built without frame pointers, such as
# absl's and glibc's; larger perf data, sampled at 499 Hz). Needs perf
# (linux-perf) and root (uprobes, perf on other processes). Not a CI test: it prints measurements
# only.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-$PWD/build/bin}
SIZE=${BENCH_SIZE:-1G}
BS=${1:-4k}; QD=${2:-32}; MODE=${3:-async}
RUNTIME=${BENCH_RUNTIME:-14}
source tests/bench/lib.sh
bench_require fio perf taskset
on_primary_cpu=(); on_secondary_cpu=()
if [[ -n ${BENCH_PIN:-} ]]; then on_primary_cpu=(taskset -c 0); on_secondary_cpu=(taskset -c 1); fi
bench_setup

sport=$(free_port); nport=$(free_port)
make_file "$DIR/p.img" "$DIR/s.img"
spid=
read -r -a secondary_more <<<"${BENCH_SECONDARY_ARGS:-}"
if [[ $MODE != off ]]; then
  "${on_secondary_cpu[@]}" "$BIN/repl-secondary" --volume=v --store="$DIR/s.img" --listen="127.0.0.1:$sport" \
    --admin-socket="$DIR/s.sock" "${secondary_more[@]}" >"$DIR/s.log" 2>&1 </dev/null &
  spid=$!; PIDS+=($spid)
  wait_port "$sport"
fi
extra=(); [[ $MODE == sync ]] && extra=(--sync)
read -r -a more <<<"${BENCH_PRIMARY_ARGS:-}"; extra+=("${more[@]}")
# off: a secondary address nobody listens on (the primary marks its bitmap and serves alone)
"${on_primary_cpu[@]}" "$BIN/repl-primary" --volume=v --store="$DIR/p.img" --secondary="127.0.0.1:$sport" \
  --nbd-listen="127.0.0.1:$nport" --admin-socket="$DIR/p.sock" --assume-clean "${extra[@]}" \
  >"$DIR/p.log" 2>&1 </dev/null &
ppid=$!; PIDS+=($ppid)
wait_port "$nport"
[[ $MODE == off ]] || wait_in_sync "$DIR/p.sock" 30

# Uprobes on our own functions (group brbench, removed again on exit); a probe that cannot be
# placed is skipped, and so is its count.
perf probe -q -d 'brbench:*' >/dev/null 2>&1 || true
pevents=context-switches,task-clock
sevents=context-switches,task-clock
add_probe() {  # add_probe NAME BINARY SYMBOL_PATTERN: prints the event name if placed
  local sym; sym=$(nm "$2" | awk -v p="$3" '$2 == "T" && $3 ~ p && !found {print $3; found = 1}')
  [[ -n $sym ]] && perf probe -q -x "$2" -a "brbench:$1=$sym" >/dev/null 2>&1 && echo "brbench:$1" || true
}
if [[ ${BENCH_PROBES:-1} != 0 ]]; then
  e=$(add_probe submit "$BIN/repl-primary" '^_ZN9blockrepl10Replicator6SubmitENS_'); [[ -z $e ]] || pevents+=,$e
  if [[ -n $spid ]]; then
    e=$(add_probe apply "$BIN/repl-secondary" '^_ZN9blockrepl7Applier10ApplyBatch'); [[ -z $e ]] || sevents+=,$e
  fi
fi
callgraph=(-F 999 -g)
[[ ${BENCH_CALLGRAPH:-fp} == dwarf ]] && callgraph=(-F 499 --call-graph dwarf,16384)
trap 'perf probe -q -d "brbench:*" >/dev/null 2>&1 || true; bench_cleanup' EXIT

"${on_primary_cpu[@]}" fio --name=profile --ioengine=nbd --uri="nbd://127.0.0.1:$nport/v" --rw="${RW:-randwrite}" \
  --bs="$BS" --iodepth="$QD" --randrepeat=1 --norandommap --size="$SIZE" --time_based \
  --runtime="$RUNTIME" --ramp_time=1 --output-format=json --output="$DIR/fio.json" &
fio_pid=$!
sleep 4
samplers=()
perf stat --per-thread -e "$pevents" -p "$ppid" -o "$DIR/stat-p.txt" -- sleep 8 &
samplers+=($!)
perf record -q "${callgraph[@]}" -o "$DIR/perf-p.data" -p "$ppid" -- sleep 8 >/dev/null 2>&1 &
samplers+=($!)
if [[ -n $spid ]]; then
  perf stat --per-thread -e "$sevents" -p "$spid" -o "$DIR/stat-s.txt" -- sleep 8 &
  samplers+=($!)
  perf record -q "${callgraph[@]}" -o "$DIR/perf-s.data" -p "$spid" -- sleep 8 >/dev/null 2>&1 &
  samplers+=($!)
fi
wait "$fio_pid" "${samplers[@]}"  # not the agents: they run until the exit trap stops them
# The primary's own counters (whole run): writes per stream message without uprobes.
[[ $MODE == off ]] || "$BIN/replctl" --admin-socket="$DIR/p.sock" status --json >"$DIR/status-p.json" || true
"$PY" - "$DIR" "$BS" "$QD" "$MODE" <<'PYEOF'
import collections, json, os, re, sys
d, bs, qd, mode = sys.argv[1:]
job = json.load(open(f"{d}/fio.json"))["jobs"][0]
side = job["read"] if job["read"]["iops"] > job["write"]["iops"] else job["write"]
iops = side["iops"]
print(f"{bs} QD {qd} {mode}: {iops:.0f} IOPS, {side['bw_bytes'] / 1e6:.0f} MB/s")
ops = iops * 8  # requests in the 8 s sampled
probes = {}
for who in ("p", "s"):
    path = f"{d}/stat-{who}.txt"
    if not os.path.exists(path):
        continue
    by = collections.defaultdict(lambda: collections.Counter())
    for line in open(path):
        m = re.match(r"\s*(\S+?)-(\d+)\s+([\d,.]+)\s+(?:msec\s+)?(\S+)", line)
        if m:
            by[m.group(1)][m.group(4)] += float(m.group(3).replace(",", ""))
    total = collections.Counter()
    for c in by.values():
        total.update(c)
    name = "primary" if who == "p" else "secondary"
    cpu_ms = total["task-clock"]
    print(f"  {name}: {cpu_ms / 8000:.2f} CPU, {cpu_ms * 1000 / ops:.1f} us CPU per request, "
          f"{total['context-switches'] / ops:.2f} context switches per request")
    for thread, c in sorted(by.items(), key=lambda kv: -kv[1]["task-clock"])[:8]:
        print(f"    {thread:16s} {c['task-clock'] / 8000:5.2f} CPU  {c['context-switches'] / ops:5.2f} cs/request")
    for event, n in total.items():
        if event.startswith("brbench:"):
            probes[event.split(":")[1]] = n
try:
    v = json.load(open(f"{d}/status-p.json"))["volumes"][0]
    writes, messages = int(v.get("replicated_writes_total", 0)), int(v.get("stream_messages_total", 0))
    if messages:
        print(f"  stream (primary's counters, whole run): {writes} writes in {messages} messages: "
              f"{writes / messages:.1f} writes per message")
except (OSError, ValueError, KeyError, IndexError):
    pass
if probes.get("submit") and probes.get("apply"):
    print(f"  stream: {probes['submit']:.0f} ops submitted, {probes['apply']:.0f} batches applied: "
          f"{probes['submit'] / probes['apply']:.1f} ops per batch")
PYEOF
[[ -z ${BENCH_KEEP:-} ]] || echo "perf data: $DIR/perf-p.data $DIR/perf-s.data (perf report -i ...)"
