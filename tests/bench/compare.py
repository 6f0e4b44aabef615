#!/usr/bin/python3
"""fio (its nbd engine) against blockrepl and its peers, in one run, on the same kind of file.

    tests/bench/compare.py [--runtime S] [--rounds N] [--size SIZE] [--targets T,...]
                           [--workloads W,...] [--json FILE] [--keep] [--baseline DIR]
                           [--repl-args "FLAGS"] [--fresh] [--files sparse|written]
                           [--fill-block 1M|4K]

Targets (all on 127.0.0.1 TCP, each on its own file in one temp dir; sparse unless --files
written, which starts every file full of data, as a disk in use is: on a sparse file a write's
first touch of a block costs the filesystem an allocation, and a slower target spends more of a
timed run on first touches than a faster one. --fill-block is the size of the writes that fill
them, and so of the page cache's folios the workloads find: with 1 MiB folios a 4 KiB write
costs every target several times what it does with 4 KiB ones):
  nbdkit         nbdkit's file plugin (unreplicated; the reference of every ratio)
  qemu-nbd       qemu-nbd on a raw file (unreplicated)
  qsd-background qemu-storage-daemon exporting a raw file, blockdev-mirror copy-mode=background
                 to a replica served by nbdkit (QEMU's asynchronous replication)
  qsd-blocking   the same with copy-mode=write-blocking (QEMU's synchronous replication)
  repl-off       repl-primary whose secondary is down: NBD + write-intent bitmap, no stream
  repl-async     repl-primary replicating to a local repl-secondary (default window)
  repl-sync      repl-primary --sync to a local repl-secondary
  base-off, base-async, base-sync
                 the same three with the binaries of --baseline DIR (another build, e.g. the
                 commit before a change): an A/B of a change in one run; with --repl-args, of
                 repl-primary flags (base-* get none)
Workloads: seq1M_qd8 (1 MiB sequential write, QD 8), rand4K_qd1, rand4K_qd32, rand64K_qd16
(random writes), read4K_qd32 (4 KiB random read). Targets take turns within each workload and
reverse order from round to round, so machine drift hits all alike; before each run the page
cache's dirty pages are written back (sync), so no target pays for another's deferred writeback. Before each run a replicating
target must have caught up (in sync / mirror converged), so runs do not overlap.
By default every target lives through the whole run; with --fresh each workload gets new
targets on new sparse files (started before its rounds, replicas checked and everything stopped
and deleted after them), so no workload inherits what an earlier one left: allocated files, page
cache, the agents' memory. A read workload's files then start full of data (the same bytes in a
source and its replica), not holes.

Per run: MB/s, IOPS, p50/p99 completion latency, ratio of IOPS to nbdkit, CPU seconds of the
target's processes per GiB written (utime+stime from /proc; for replicating targets both sides,
in total and by process: primary + secondary, or QEMU + its replica's nbdkit), and each
process's peak RSS during the run (VmHWM, reset before the run); fio's own CPU seconds per GiB
(its NBD client) and how busy the host's cores were during the run (user+system+irq, of all
time but steal): near 100%, a run is CPU-bound and what everything on the machine spends per
GiB sets its rate (tests/bench/copy_floor.py); for repl-* and base-* pairs
also the writes each stream message carried (the primary's counters; JSON and progress lines,
not the table). The table goes to stdout, the same as JSON to --json. At the end every replica
is compared with its source byte for byte (cmp). Every process is stopped by PID. Installs what
it needs with scripts/install-deps.sh --bench. Not a CI test: timings never decide pass/fail.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BLOCKREPL_BIN", ROOT / "build" / "bin"))
WORKLOADS = {
    "seq1M_qd8": "--rw=write --bs=1M --iodepth=8",
    "rand4K_qd1": "--rw=randwrite --bs=4k --iodepth=1 --randrepeat=1 --norandommap",
    "rand4K_qd32": "--rw=randwrite --bs=4k --iodepth=32 --randrepeat=1 --norandommap",
    "rand64K_qd16": "--rw=randwrite --bs=64k --iodepth=16 --randrepeat=1 --norandommap",
    "read4K_qd32": "--rw=randread --bs=4k --iodepth=32 --randrepeat=1 --norandommap",
}
TARGETS = ["nbdkit", "qemu-nbd", "qsd-background", "qsd-blocking", "repl-off", "repl-async",
           "repl-sync"]
BASELINE_BIN = None  # --baseline: binaries of the base-* targets
REPL_ARGS = []  # --repl-args: extra repl-primary flags of the repl-* targets
SECONDARY_ARGS = []  # --secondary-args: extra repl-secondary flags of the repl-* targets
PROCS = []  # every process we started, stopped by PID at exit


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, poll=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise SystemExit(f"bench: timed out waiting for {what}")


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(argv, logfile):
    p = subprocess.Popen([str(a) for a in argv], stdout=open(logfile, "w"),
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu_ticks():
    """(busy, total) jiffies of all cores since boot, from /proc/stat's first line. Busy is
    user, nice, system, irq and softirq; total adds idle, iowait and steal (the hypervisor's).
    Guest time is already inside user."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in open("/proc/stat").readline().split()[1:9])
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal


def reset_peak_rss(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rw")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise SystemExit(f"bench: QMP {name}: {r['error']}")


class Target:
    """A running server: its NBD URI, the PIDs whose CPU and RSS count, and how to tell that its
    replica (if any) has caught up and equals the source."""

    def __init__(self, name, uri, pids, source=None, replica=None):
        self.name, self.uri, self.pids = name, uri, pids
        self.source, self.replica = source, replica
        self.admin = None  # repl-*: the primary's admin socket
        self.qmp = None    # qsd-*: the QMP connection

    def status(self):
        """repl-*: the primary's volume status (`replctl status --json`)."""
        r = subprocess.run([BIN / "replctl", f"--admin-socket={self.admin}", "status", "--json"],
                           capture_output=True, text=True)
        return json.loads(r.stdout)["volumes"][0]

    def caught_up(self):
        if self.admin:
            v = self.status()
            return (v["connection"] == "connected" and v["sync_state"] == "in_sync"
                    and v["dirty_chunks"] == 0 and v["inflight_writes"] == 0)
        if self.qmp:
            jobs = self.qmp.cmd("query-block-jobs")
            return bool(jobs) and jobs[0]["ready"] and jobs[0]["offset"] == jobs[0]["len"]
        return True


FILL_PIECE = os.urandom(1 << 20)  # the same bytes in a source and its replica
FILL_BLOCK = 1 << 20  # --fill-block


def make_file(path, size, fill):
    """A sparse file, or (fill: --files written, or --fresh before a read workload) one full of
    data, written in pieces of FILL_BLOCK bytes: the piece decides the size of the page cache's
    folios, and so what every later 4 KiB write into them costs (ext4 on Linux 6.18 walks all of a
    folio's buffer heads: docs/PERFORMANCE.md, round 17)."""
    with open(path, "wb", buffering=0) as f:  # unbuffered: each piece is one write()
        if not fill:
            f.truncate(size)
            return
        view = memoryview(FILL_PIECE)
        done = 0
        while done < size:
            at = done % len(FILL_PIECE)
            n = min(FILL_BLOCK, size - done, len(FILL_PIECE) - at)
            f.write(view[at:at + n])
            done += n


def start_target(name, d, size, fill=False):
    port = free_port()
    uri = f"nbd://127.0.0.1:{port}/"
    if name == "nbdkit":
        img = d / "nbdkit.img"
        make_file(img, size, fill)
        p = spawn(["nbdkit", "-f", "-i", "127.0.0.1", "-p", port, "file", img], d / "nbdkit.log")
        wait_for(lambda: port_open(port), 10, "nbdkit")
        return Target(name, uri, [p.pid])
    if name == "qemu-nbd":
        img = d / "qemu-nbd.img"
        make_file(img, size, fill)
        p = spawn(["qemu-nbd", "-f", "raw", "-b", "127.0.0.1", "-p", port, "-t", "--shared=16",
                   "--cache=writeback", "--aio=threads", img], d / "qemu-nbd.log")
        wait_for(lambda: port_open(port), 10, "qemu-nbd")
        return Target(name, uri, [p.pid])
    if name.startswith("qsd-"):
        mode = name.split("-", 1)[1].replace("blocking", "write-blocking")
        src, dst = d / f"{name}-src.img", d / f"{name}-dst.img"
        make_file(src, size, fill)
        make_file(dst, size, fill)
        dsock, qmp = d / f"{name}-dst.sock", d / f"{name}-qmp.sock"
        rep = spawn(["nbdkit", "-f", "-U", dsock, "file", dst], d / f"{name}-nbdkit.log")
        wait_for(lambda: dsock.exists(), 10, "the replica's nbdkit")
        qsd = spawn(["qemu-storage-daemon",
                     "--blockdev", f"driver=file,node-name=src,filename={src},aio=threads",
                     "--blockdev", f"driver=nbd,node-name=dst,server.type=unix,server.path={dsock}",
                     "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
                     "--export", "type=nbd,id=exp0,node-name=src,name=disk,writable=on",
                     "--chardev", f"socket,path={qmp},server=on,wait=off,id=qmp0",
                     "--monitor", "chardev=qmp0"], d / f"{name}.log")
        wait_for(lambda: qmp.exists() and port_open(port), 10, "qemu-storage-daemon")
        t = Target(name, f"nbd://127.0.0.1:{port}/disk", [qsd.pid, rep.pid], src, dst)
        t.qmp = Qmp(qmp)
        t.qmp.cmd("blockdev-mirror", **{"job-id": "m0", "device": "src", "target": "dst",
                                       "sync": "full", "copy-mode": mode})
        wait_for(t.caught_up, 120, f"{name}: the mirror to be ready")
        return t
    # repl-* and base-* (the same from the --baseline build)
    binaries = BASELINE_BIN if name.startswith("base-") else BIN
    name_kind = name.split("-", 1)[1]  # off | async | sync
    sport = free_port()
    prim, sec = d / f"{name}-primary.img", d / f"{name}-secondary.img"
    make_file(prim, size, fill)
    pids = []
    if name_kind != "off":
        make_file(sec, size, fill)
        s = spawn([binaries / "repl-secondary", f"--volume={name}", f"--store={sec}",
                   f"--listen=127.0.0.1:{sport}", f"--admin-socket={d / (name + '-s.sock')}",
                   *(SECONDARY_ARGS if name.startswith("repl-") else [])],
                  d / f"{name}-secondary.log")
        wait_for(lambda: port_open(sport), 10, f"{name}: the secondary")
        pids.append(s.pid)
    extra = ["--sync"] if name_kind == "sync" else []
    if name.startswith("repl-"):
        extra += REPL_ARGS
    admin = d / f"{name}-p.sock"
    p = spawn([binaries / "repl-primary", f"--volume={name}", f"--store={prim}",
               f"--secondary=127.0.0.1:{sport}", f"--nbd-listen=127.0.0.1:{port}",
               f"--admin-socket={admin}", "--assume-clean", *extra], d / f"{name}-primary.log")
    wait_for(lambda: port_open(port), 10, f"{name}: the primary")
    pids.insert(0, p.pid)
    t = Target(name, f"nbd://127.0.0.1:{port}/{name}", pids,
               prim if name_kind != "off" else None, sec if name_kind != "off" else None)
    if name_kind != "off":
        t.admin = admin
        wait_for(t.caught_up, 60, f"{name}: in sync")
    return t


def stream_counters(t):
    """(client writes replicated, stream messages sent) of a repl target's primary; None for
    other targets and for builds without the message counter."""
    if not t.admin:
        return None
    v = t.status()
    if "stream_messages_total" not in v:
        return None
    return int(v["replicated_writes_total"]), int(v["stream_messages_total"])


def run_fio(t, wname, size, runtime, out, others=()):
    # Write back every dirty page first: targets that never sync (nbdkit, qemu-nbd, repl-off)
    # leave up to their whole file dirty, and the kernel's writeback of it (block allocation in a
    # sparse file, on these same 2 cores) would otherwise run during the next target's run.
    os.sync()
    for pid in t.pids:
        reset_peak_rss(pid)
    cpu0 = [cpu_seconds(pid) for pid in t.pids]
    stream0 = stream_counters(t)
    # The idle targets share the 2 cores: what they burn meanwhile is reported (not charged).
    idle_pids = [pid for o in others for pid in o.pids]
    idle0 = sum(cpu_seconds(pid) for pid in idle_pids)
    host0 = host_cpu_ticks()
    argv = ["fio", f"--name={wname}", "--ioengine=nbd", f"--uri={t.uri}",
            *WORKLOADS[wname].split(), f"--size={size}", "--time_based", f"--runtime={runtime}",
            "--ramp_time=1", "--output-format=json", f"--output={out}"]
    r = subprocess.run(argv, capture_output=True, text=True)
    host1 = host_cpu_ticks()
    if r.returncode != 0:
        raise SystemExit(f"bench: fio failed on {t.name}/{wname}: {r.stdout}{r.stderr}")
    # Replication work done after fio returned (the window draining) belongs to this run.
    wait_for(t.caught_up, 300, f"{t.name}: to catch up after {wname}")
    # Per process too: a replicating pair's primary alone against repl-off shows the primary's
    # own replication cost (on these shared cores the replica's work is charged to the pair).
    cpu_each = [cpu_seconds(pid) - c0 for pid, c0 in zip(t.pids, cpu0)]
    stream1 = stream_counters(t)
    # How many writes a replication stream message carried (batching, --batch-linger).
    writes_per_message = None
    if stream0 and stream1 and stream1[1] > stream0[1]:
        writes_per_message = round((stream1[0] - stream0[0]) / (stream1[1] - stream0[1]), 1)
    cpu = sum(cpu_each)
    idle_cpu = sum(cpu_seconds(pid) for pid in idle_pids) - idle0
    job = json.load(open(out))["jobs"][0]
    side = job["read"] if wname.startswith("read") else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    # fio's io_bytes excludes the ramp; CPU covers the whole run: count ramp bytes at the
    # measured rate so CPU per GiB is not inflated.
    gib = side["bw_bytes"] * (runtime + 1) / 2**30
    # The rest of the machine's budget: fio's own CPU (its NBD client: the request's send is a
    # copy of every byte too), and how busy all cores were while fio ran. Near 100% busy, a
    # run is CPU-bound: what the target, fio and the kernel's writeback spend per GiB sets
    # the rate (tests/bench/copy_floor.py).
    client_cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
    client_gib = side["io_bytes"] / 2**30
    busy = host1[0] - host0[0], host1[1] - host0[1]
    return {"mb_s": side["bw_bytes"] / 1e6, "iops": side["iops"],
            "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3,
            "cpu_s_per_gib": cpu / gib if gib > 0 else 0.0,
            "cpu_s_per_gib_each": [c / gib if gib > 0 else 0.0 for c in cpu_each],
            "idle_targets_cpu_s": round(idle_cpu, 2),
            "client_cpu_s_per_gib": client_cpu / client_gib if client_gib > 0 else 0.0,
            "host_busy_pct": round(100 * busy[0] / busy[1], 1) if busy[1] > 0 else 0.0,
            "writes_per_message": writes_per_message,
            "peak_rss_mib": [round(peak_rss_mib(pid), 1) for pid in t.pids]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtime", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--baseline", help="build/bin of another build, for the base-* targets")
    ap.add_argument("--repl-args", default="", help="extra repl-primary flags for repl-* targets")
    ap.add_argument("--secondary-args", default="",
                    help="extra repl-secondary flags for repl-* targets (e.g. --store-io=direct)")
    ap.add_argument("--fresh", action="store_true",
                    help="new targets and files for each workload")
    ap.add_argument("--files", choices=["sparse", "written"], default="sparse",
                    help="sparse files, or files full of data (a disk in use)")
    ap.add_argument("--fill-block", default="1M",
                    help="--files written: the size of the writes that fill each file (1M: the "
                         "page cache in 1 MiB folios, as after large writes; 4K: in 4 KiB ones, "
                         "as after small writes)")
    a = ap.parse_args()
    global BASELINE_BIN, REPL_ARGS, SECONDARY_ARGS, FILL_BLOCK
    REPL_ARGS = a.repl_args.split()
    SECONDARY_ARGS = a.secondary_args.split()
    if a.baseline:
        BASELINE_BIN = Path(a.baseline)
    elif any(t.startswith("base-") for t in a.targets.split(",")):
        raise SystemExit("bench: base-* targets need --baseline DIR")
    subprocess.run([ROOT / "scripts" / "install-deps.sh", "--bench"], check=True)
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    def parse_size(text):
        return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)
    size = parse_size(a.size)
    FILL_BLOCK = parse_size(a.fill_block)
    targets, workloads = a.targets.split(","), a.workloads.split(",")
    d = Path(tempfile.mkdtemp(prefix="blockrepl-compare."))
    results, checks = [], []
    log(f"bench: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {a.runtime} s per "
        f"run, {a.rounds} round(s), {a.size} files in {d}"
        f"{', fresh targets per workload' if a.fresh else ''}, {a.files} files"
        f"{f' (filled in {a.fill_block} writes)' if a.files == 'written' else ''}")
    try:
        # One group of workloads per set of targets: all of them, or (--fresh) one each.
        for group in ([[w] for w in workloads] if a.fresh else [workloads]):
            gdir = d / group[0] if a.fresh else d
            gdir.mkdir(exist_ok=True)
            fill = a.files == "written" or (a.fresh and group[0].startswith("read"))
            running = {name: start_target(name, gdir, size, fill) for name in targets}
            for rnd in range(1, a.rounds + 1):
                for w in group:
                    order = targets if rnd % 2 else list(reversed(targets))
                    for name in order:
                        r = run_fio(running[name], w, a.size, a.runtime,
                                    gdir / f"fio-{w}-{name}-r{rnd}.json",
                                    [t for n, t in running.items() if n != name])
                        r.update(target=name, workload=w, round=rnd)
                        results.append(r)
                        log(f"  round {rnd} {w:13s} {name:15s} {r['mb_s']:8.1f} MB/s "
                            f"{r['iops']:9.0f} IOPS  p99 {r['p99_us']:8.0f} us  "
                            f"{r['cpu_s_per_gib']:6.2f} CPU s/GiB  RSS {r['peak_rss_mib']} MiB  "
                            f"idle targets {r['idle_targets_cpu_s']:.2f} CPU s  "
                            f"fio {r['client_cpu_s_per_gib']:.2f} CPU s/GiB  "
                            f"host {r['host_busy_pct']}% busy"
                            + (f"  {r['writes_per_message']} writes/message"
                               if r["writes_per_message"] else ""))
            for name, t in running.items():
                if t.replica is None:
                    continue
                wait_for(t.caught_up, 300, f"{name}: to catch up at the end")
                same = subprocess.run(["cmp", "-s", t.source, t.replica]).returncode == 0
                checks.append({"target": name, "workloads": group, "replica_equals_source": same})
                log(f"replica check {name} ({','.join(group)}): {'equal' if same else 'DIFFERENT'}")
            if a.fresh:
                stop_all()
                PROCS.clear()
                if not a.keep:
                    shutil.rmtree(gdir, ignore_errors=True)
        summary = summarize(results, targets, workloads)
        doc = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()[0]},
               "runtime_s": a.runtime, "rounds": a.rounds, "size": a.size, "fresh": a.fresh,
               "files": a.files, "fill_block": FILL_BLOCK, "repl_args": REPL_ARGS, "secondary_args": SECONDARY_ARGS,
               "results": results, "summary": summary, "replica_checks": checks}
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=1))
        if not all(c["replica_equals_source"] for c in checks):
            sys.exit(1)
    finally:
        stop_all()
        if a.keep:
            log(f"bench: kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def summarize(results, targets, workloads):
    print()
    print("| workload | target | MB/s | IOPS | p50 us | p99 us | vs nbdkit | CPU s/GiB | "
          "by process | fio CPU s/GiB | host busy | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    summary = []
    for w in workloads:
        base = [r["iops"] for r in results if r["workload"] == w and r["target"] == "nbdkit"]
        base_iops = statistics.mean(base) if base else None
        for name in targets:
            rs = [r for r in results if r["workload"] == w and r["target"] == name]
            if not rs:
                continue
            m = {k: statistics.mean(r[k] for r in rs)
                 for k in ("mb_s", "iops", "p50_us", "p99_us", "cpu_s_per_gib",
                           "client_cpu_s_per_gib", "host_busy_pct")}
            rss = [max(r["peak_rss_mib"][i] for r in rs) for i in range(len(rs[0]["peak_rss_mib"]))]
            each = [statistics.mean(r["cpu_s_per_gib_each"][i] for r in rs)
                    for i in range(len(rs[0]["cpu_s_per_gib_each"]))]
            ratio = m["iops"] / base_iops if base_iops else None
            wpm = [r["writes_per_message"] for r in rs if r.get("writes_per_message")]
            summary.append({"workload": w, "target": name, **m, "vs_nbdkit": ratio,
                            "cpu_s_per_gib_each": each, "peak_rss_mib": rss,
                            "writes_per_message": round(statistics.mean(wpm), 1) if wpm else None})
            print(f"| {w} | {name} | {m['mb_s']:.0f} | {m['iops']:.0f} | {m['p50_us']:.0f} | "
                  f"{m['p99_us']:.0f} | {f'{ratio:.2f}x' if ratio else '-'} | "
                  f"{m['cpu_s_per_gib']:.2f} | {' + '.join(f'{x:.2f}' for x in each)} | "
                  f"{m['client_cpu_s_per_gib']:.2f} | {m['host_busy_pct']:.0f}% | "
                  f"{' + '.join(f'{x:.0f}' for x in rss)} |")
    return summary


if __name__ == "__main__":
    main()
