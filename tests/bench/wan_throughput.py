#!/usr/bin/python3
"""Replication throughput over an emulated WAN (issue 5).

The primary reaches its secondary through the e2e harness's `Wan` proxy (socat + `delay` both
ways + `pv -L` on the primary->secondary direction; TOOLING.md): 25 ms one way (50 ms RTT) and a
rate cap. For each mode in --sync, --async=1, 8, 64, 512, 4096 a fresh pair on sparse files
(`--assume-clean`, `--bitmap=memory`, `--max-inflight-bytes` = BENCH_MAX_INFLIGHT) gets two fio
workloads over NBD (`--ioengine=nbd`, QD BENCH_QD):

  seq1M    1 MiB sequential writes
  rand64K  64 KiB random writes (--randrepeat=1 --norandommap)

each BENCH_RAMP s of ramp (excluded: an async window first fills at local speed) then
BENCH_RUNTIME s measured. For every run it prints fio's MB/s, the rate the secondary acknowledged
during the measured interval (from `replctl status` every 0.5 s: replicated_bytes_total -
inflight_bytes; also its min and max over ~1 s steps), the bound min(cap, window_bytes / RTT),
the fio rate as % of the bound, the peak in flight, and one `ss` snapshot of the replication
sockets' queues in mid-run (where data waits: in the primary, the proxy, or the secondary).

  window_bytes = min(N x block size, max-inflight-bytes)            for --async=N
  window_bytes = min(QD x block size, max-inflight-bytes)           for --sync (the client's QD)

Before the modes it measures the link alone, once:
  raw      a TCP byte stream through the same kind of Wan (capped, and uncapped = the proxy's
           own ceiling), measured at the receiving end
  nbdkit   the same fio workloads against `nbdkit file` behind a capped Wan
  rtt      4 KiB writes at QD 1 against nbdkit behind the Wan (and, at the end of the --sync
           mode, through the replicating pair): the round trip actually observed
After each mode it waits for in_sync and compares the primary's and the secondary's stores.

Caveat of the cap: `pv -L` is a token bucket that banks the unused rate of an idle link (measured
here: after 2 s / 6 s idle, ~190-210 MB/s flowed through a 100 MB/s cap until ~2 s / ~6 s worth
of cap was spent). Each replication connection has its own pv, so the script never idles a pair's
link right before a capped run (the --sync RTT probe comes last), and the ramp spends what the
~0.3 s start-up banked. The "acked 1 s min-max" column shows what is left of such bursts.

  flock /tmp/blockrepl-build.lock /usr/bin/python3 tests/bench/wan_throughput.py

Env: BENCH_MODES        subset of "sync 1 8 64 512 4096" (numbers = --async=N; default all)
     BENCH_WORKLOADS    subset of "seq1M rand64K" (default both)
     BENCH_RUNTIME      measured seconds per fio run (default 15)
     BENCH_RAMP         fio ramp seconds before that (default 5)
     BENCH_QD           fio iodepth (default 64; the NBD server has 64 worker threads, so in
                        --sync mode more than 64 would not widen the window)
     BENCH_RATE         pv -L rate (default 100000000 = 100 MB/s; pv's K/M/G suffixes are
                        powers of 1024: "100m" would be 100 MiB/s = 104.9 MB/s); "none" = no
                        cap (socat + delay only: the bound is then window / RTT)
     BENCH_ONE_WAY_MS   one-way delay (default 25)
     BENCH_SIZE         volume size (default 1G)
     BENCH_MAX_INFLIGHT --max-inflight-bytes for every mode (default 1G)
     BENCH_BASELINE     0 = skip the link-alone throughput runs (the RTT probe still runs)
     BENCH_KEEP=1       keep the temp dir (fio JSON, logs, status samples, ss snapshots)
     BLOCKREPL_BIN      binaries (default <repo>/build/bin)
     GRPC_TRACE, GRPC_VERBOSITY  inherited by the agents: GRPC_VERBOSITY=DEBUG
                        GRPC_TRACE=bdp_estimator logs the secondary's BDP estimate (its HTTP/2
                        receive window follows it) into sec-MODE.log (use with BENCH_KEEP=1)
Exit status: 0, 1 if a replica differs from its primary (or anything fails), 77 if a tool is
missing. Every process is started through the harness and stopped by PID.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import harness as H  # noqa: E402

MODES = os.environ.get("BENCH_MODES", "sync 1 8 64 512 4096").split()
WORKLOADS = os.environ.get("BENCH_WORKLOADS", "seq1M rand64K").split()
RUNTIME = int(os.environ.get("BENCH_RUNTIME", "15"))
RAMP = int(os.environ.get("BENCH_RAMP", "5"))
QD = int(os.environ.get("BENCH_QD", "64"))
RATE = os.environ.get("BENCH_RATE", "100000000")
if RATE.lower() in ("", "none", "0"):
    RATE = None
ONE_WAY_MS = int(os.environ.get("BENCH_ONE_WAY_MS", "25"))
SIZE = os.environ.get("BENCH_SIZE", "1G")
MAX_INFLIGHT = os.environ.get("BENCH_MAX_INFLIGHT", "1G")
BASELINE = os.environ.get("BENCH_BASELINE", "1") != "0"
if os.environ.get("BENCH_KEEP"):
    os.environ["BLOCKREPL_KEEP"] = "1"
# The whole run takes ~7-9 minutes with the defaults; the harness's alarm must not cut it.
os.environ.setdefault("BLOCKREPL_DEADLINE", "3000")

WL = {
    "seq1M": (1 * H.MiB, ["--rw=write", "--bs=1M"]),
    "rand64K": (64 * H.KiB, ["--rw=randwrite", "--bs=64k", "--randrepeat=1", "--norandommap"]),
}
RTT_S = 2 * ONE_WAY_MS / 1000.0


def pv_rate(s):
    """Bytes per second of a pv -L argument (suffixes K/M/G/T are powers of 1024)."""
    if s is None:
        return float("inf")
    s = s.strip()
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
    if s and s[-1].upper() in mult:
        return float(s[:-1]) * mult[s[-1].upper()]
    return float(s)


CAP = pv_rate(RATE)
CAP_DESC = f"pv -L {RATE} = {CAP / 1e6:.1f} MB/s" if RATE else "no cap (socat + delay only)"
MAX_INFLIGHT_B = H.parse_size(MAX_INFLIGHT)


def mb(x):
    return x / 1e6


# ----------------------------------------------------------------------------------------------
# fio, status sampling, socket snapshots


def run_fio(case, name, uri, args, runtime, ramp):
    """fio as a harness Proc (stopped by PID); returns its JSON 'write' section."""
    out = case.dir / f"fio-{name}.json"
    argv = ["fio", f"--name={name}", "--ioengine=nbd", f"--uri={uri}", *args, f"--size={SIZE}",
            "--time_based", f"--runtime={runtime}", f"--ramp_time={ramp}",
            "--output-format=json", f"--output={out}"]
    p = H.Proc(f"fio-{name}", argv, case.dir)
    rc = p.wait(runtime + ramp + 180)
    if rc is None:
        p.stop()
        raise H.Fail(f"fio {name} did not finish; log:\n{p.tail(20)}")
    if rc != 0:
        raise H.Fail(f"fio {name} exited {rc}; log:\n{p.tail(20)}")
    return json.loads(out.read_text())["jobs"][0]["write"]


def ss_snapshot(ports):
    """`ss -tn` rows touching any of `ports`: (local, peer, recv_q, send_q)."""
    r = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=10)
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        rq, sq, local, peer = parts[0], parts[1], parts[2], parts[3]
        lp, pp = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
        if lp in ports or pp in ports:
            rows.append((local, peer, int(rq), int(sq)))
    return rows


class Sampler(threading.Thread):
    """Polls the primary's status every 0.5 s while fio runs; takes one `ss` snapshot of the
    replication sockets in the middle of the measured interval."""

    def __init__(self, prim, ports, snap_at):
        super().__init__(daemon=True)
        self.prim, self.ports, self.snap_at = prim, ports, snap_at
        self.samples = []  # (t, replicated_bytes_total, inflight_bytes, inflight_writes)
        self.snap = None
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                st = self.prim.status()
                self.samples.append((time.monotonic() - self.t0, st["replicated_bytes_total"],
                                     st["inflight_bytes"], st["inflight_writes"]))
            except Exception:  # a missed poll is harmless
                pass
            if self.snap is None and time.monotonic() - self.t0 >= self.snap_at:
                try:
                    self.snap = ss_snapshot(self.ports)
                except Exception as e:
                    self.snap = [("ss failed", str(e), 0, 0)]
            self.stop_ev.wait(0.5)

    def finish(self):
        self.stop_ev.set()
        self.join(10)

    def acked_rate(self, t_from, t_to):
        """Bytes/s the secondary acknowledged between t_from and t_to (acked = enqueued -
        still in flight), and the max in-flight writes / bytes seen in that interval."""
        pts = [s for s in self.samples if t_from <= s[0] <= t_to]
        if len(pts) < 2:
            return None, None, None, None
        a, b = pts[0], pts[-1]
        acked = (b[1] - b[2]) - (a[1] - a[2])
        per_s = []  # acked rate over ~1 s steps: shows bursts and stalls
        for i, x in enumerate(pts):
            y = next((q for q in pts[i + 1:] if q[0] >= x[0] + 1.0), None)
            if y:
                per_s.append(((y[1] - y[2]) - (x[1] - x[2])) / (y[0] - x[0]))
        span = (min(per_s), max(per_s)) if per_s else None
        return acked / (b[0] - a[0]), max(p[3] for p in pts), max(p[2] for p in pts), span


def fmt_snap(snap, names):
    if not snap:
        return "(no snapshot)"
    out = []
    for local, peer, rq, sq in snap:
        lp = int(local.rsplit(":", 1)[1]) if ":" in local else 0
        pp = int(peer.rsplit(":", 1)[1]) if ":" in peer else 0
        who = names.get((lp, pp), f"{local}->{peer}")
        out.append(f"{who}: recv-q {rq} send-q {sq}")
    return "; ".join(out)


# ----------------------------------------------------------------------------------------------
# the link alone


def raw_stream(case, rate, secs=6):
    """Push a TCP byte stream through a Wan for `secs`; the rate seen at the receiving end
    (from 1 s after its first byte to its last byte)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    wan = H.Wan(ONE_WAY_MS, srv.getsockname()[1], rate=rate)
    marks = []

    def sink():
        c, _ = srv.accept()
        buf = bytearray(1 << 20)
        total = 0
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            total += n
            marks.append((time.monotonic(), total))
        c.close()

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", wan.port))
    chunk = os.urandom(1 << 20)
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    t.join(secs + 120)
    s.close()
    srv.close()
    wan.proc.stop()
    if not marks:
        raise H.Fail("raw stream: nothing arrived through the proxy")
    first = marks[0][0]
    pts = [m for m in marks if m[0] >= first + 1.0]
    if len(pts) < 2:
        pts = marks
    rate_bps = (pts[-1][1] - pts[0][1]) / max(1e-9, pts[-1][0] - pts[0][0])
    H.log(f"raw stream through wan (rate {rate or 'uncapped'}): {marks[-1][1]} bytes, "
          f"{mb(rate_bps):.1f} MB/s at the receiver")
    return rate_bps


def rtt_probe(case, uri, name, secs=4):
    w = run_fio(case, name, uri, ["--rw=write", "--bs=4k", "--iodepth=1"], secs, 1)
    c = w["clat_ns"]
    p50 = c.get("percentile", {}).get("50.000000", 0) / 1e6
    H.log(f"rtt probe {name}: 4 KiB QD1 writes, mean {c['mean'] / 1e6:.1f} ms, "
          f"p50 {p50:.1f} ms, {w['total_ios']} writes")
    return c["mean"] / 1e6, p50


def baseline(case, results, notes):
    if BASELINE:
        if RATE:
            notes["raw_capped"] = raw_stream(case, RATE)
        notes["raw_uncapped"] = raw_stream(case, None)
    img = case.path("nbdkit.img")
    H.make_sparse(img, SIZE)
    port = H.free_port()
    nbdkit = H.Proc("nbdkit", ["nbdkit", "-f", "-i", "127.0.0.1", "-p", port, "--threads", "64",
                               "file", img], case.dir)
    H.wait_for(lambda: H.port_listening(port), 10, "nbdkit to listen", procs=[nbdkit])
    wan = H.Wan(ONE_WAY_MS, port, rate=RATE)
    uri = f"nbd://127.0.0.1:{wan.port}/"
    notes["rtt_nbdkit"] = rtt_probe(case, uri, "rtt-nbdkit")
    if BASELINE:
        for wl in WORKLOADS:
            bs, args = WL[wl]
            w = run_fio(case, f"{wl}-nbdkit", uri, [*args, f"--iodepth={QD}"], RUNTIME, RAMP)
            window = QD * bs
            results.append(dict(mode="link: nbdkit behind wan", workload=wl, fio=w["bw_bytes"],
                                acked=None, window=window, bound=min(CAP, window / RTT_S),
                                peak=None, snap="", span=None))
            H.log(f"{wl} nbdkit behind wan: {mb(w['bw_bytes']):.1f} MB/s")
    wan.proc.stop()
    nbdkit.stop()
    os.unlink(img)


# ----------------------------------------------------------------------------------------------
# one replicating pair per mode


def mode_label(mode):
    return "--sync" if mode == "sync" else f"--async={mode}"


def run_mode(case, mode, results, notes, mismatches):
    sync = mode == "sync"
    sec = case.secondary(volume="wan", size=SIZE, name=f"sec-{mode}")
    wan = H.Wan(ONE_WAY_MS, sec.port, rate=RATE)
    prim = case.primary(wan.port, volume="wan", size=SIZE, bitmap="memory",
                        sync=sync, async_n=None if sync else int(mode),
                        max_inflight_bytes=MAX_INFLIGHT, assume_clean=True,
                        name=f"prim-{mode}")
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    for wl in WORKLOADS:
        bs, args = WL[wl]
        n = QD if sync else int(mode)
        window = min(n * bs, MAX_INFLIGHT_B)
        bound = min(CAP, window / RTT_S)
        sampler = Sampler(prim, {wan.port, sec.port}, RAMP + RUNTIME / 2)
        sampler.start()
        t_start = time.monotonic() - sampler.t0
        w = run_fio(case, f"{wl}-{mode}", prim.uri, [*args, f"--iodepth={QD}"], RUNTIME, RAMP)
        sampler.finish()
        acked, peak_w, peak_b, span = sampler.acked_rate(t_start + RAMP + 0.5,
                                                   t_start + RAMP + RUNTIME + 0.5)
        # which socket is which: primary->proxy, proxy(accepted), proxy->secondary, secondary
        names = {}
        for local, peer, _, _ in sampler.snap or []:
            try:
                lp, pp = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
            except (IndexError, ValueError):
                continue
            if pp == wan.port:
                names[(lp, pp)] = "primary->proxy"
            elif lp == wan.port:
                names[(lp, pp)] = "proxy(in)"
            elif pp == sec.port:
                names[(lp, pp)] = "proxy->secondary"
            elif lp == sec.port:
                names[(lp, pp)] = "secondary(in)"
        snap = fmt_snap(sampler.snap, names)
        with open(case.dir / f"samples-{wl}-{mode}.json", "w") as f:
            json.dump({"samples": sampler.samples, "ss": sampler.snap}, f)
        results.append(dict(mode=mode_label(mode), workload=wl, fio=w["bw_bytes"], acked=acked,
                            window=window, bound=bound, peak=(peak_w, peak_b), snap=snap,
                            span=span))
        H.log(f"{wl} {mode_label(mode)}: fio {mb(w['bw_bytes']):.1f} MB/s, acked "
              f"{mb(acked or 0):.1f} MB/s, bound {mb(bound):.1f} MB/s, peak in flight "
              f"{peak_w} writes / {peak_b} bytes; mid-run sockets: {snap}")
        # the backlog of an async window drains before the next run starts
        drain = 60 + (window / max(CAP / 10, 1))
        H.wait_in_sync(prim, timeout=drain, secondary=sec)
    H.wait_in_sync(prim, timeout=120, secondary=sec)
    if sync:
        # last: pv -L is a token bucket that banks the unused rate of an idle link (about
        # 1 s of cap per idle second, measured), so a light run right before a capped run
        # would let that run burst above the cap
        notes["rtt_sync"] = rtt_probe(case, prim.uri, "rtt-sync")
        H.wait_in_sync(prim, timeout=60, secondary=sec)
    st = prim.status()
    prim.stop()
    sec.stop()
    wan.proc.stop()
    diff = H.compare_files(prim.store, sec.store)
    if diff:
        mismatches.append(f"{mode_label(mode)}: {diff}")
        H.log(f"REPLICA MISMATCH {mode_label(mode)}: {diff}")
    else:
        H.log(f"{mode_label(mode)}: secondary store == primary store ({SIZE}); peak in flight "
              f"{st['peak_inflight_writes']} writes / {st['peak_inflight_bytes']} bytes")
    for p in (prim.store, sec.store):
        os.unlink(p)


# ----------------------------------------------------------------------------------------------


def body(case):
    H.require_tools("fio", "nbdkit", "socat", "delay", "pv", "ss")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    H.log(f"wan_throughput: {os.cpu_count()} cores, load {load}; one-way {ONE_WAY_MS} ms "
          f"(RTT {RTT_S * 1000:.0f} ms), {CAP_DESC}, QD {QD}, "
          f"{RAMP} s ramp + {RUNTIME} s, volume {SIZE}, --max-inflight-bytes={MAX_INFLIGHT}, "
          f"--bitmap=memory, modes {MODES}, workloads {WORKLOADS}")
    results, notes, mismatches = [], {}, []
    t0 = time.monotonic()
    baseline(case, results, notes)
    for mode in MODES:
        run_mode(case, mode, results, notes, mismatches)

    print()
    print(f"WAN: {ONE_WAY_MS} ms one way ({RTT_S * 1000:.0f} ms RTT nominal), cap {CAP_DESC}; "
          f"fio QD {QD}, {RAMP} s ramp + {RUNTIME} s measured; "
          f"--max-inflight-bytes={MAX_INFLIGHT}, --bitmap=memory; "
          f"total {time.monotonic() - t0:.0f} s")
    if "raw_uncapped" in notes:
        capped = (f"capped {mb(notes['raw_capped']):.1f} MB/s, " if "raw_capped" in notes
                  else "")
        print(f"link alone, raw TCP stream: {capped}"
              f"uncapped (socat+delay only) {mb(notes['raw_uncapped']):.1f} MB/s")
    if "rtt_nbdkit" in notes:
        m, p = notes["rtt_nbdkit"]
        print(f"observed RTT, 4 KiB QD1 write to nbdkit behind the wan: mean {m:.1f} ms, "
              f"p50 {p:.1f} ms")
    if "rtt_sync" in notes:
        m, p = notes["rtt_sync"]
        print(f"observed RTT, 4 KiB QD1 write through the --sync pair: mean {m:.1f} ms, "
              f"p50 {p:.1f} ms")
    print()
    print("| mode | workload | fio MB/s | acked MB/s | acked 1 s min-max | window | bound MB/s "
          "| % of bound | peak in flight (writes / MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        acked = f"{mb(r['acked']):.1f}" if r["acked"] is not None else "-"
        peak = (f"{r['peak'][0]} / {r['peak'][1] / H.MiB:.1f}"
                if r["peak"] and r["peak"][0] is not None else "-")
        span = (f"{mb(r['span'][0]):.0f}-{mb(r['span'][1]):.0f}" if r["span"] else "-")
        win = r["window"]
        win_s = f"{win / H.MiB:g} MiB" if win >= H.MiB else f"{win // H.KiB} KiB"
        print(f"| {r['mode']} | {r['workload']} | {mb(r['fio']):.1f} | {acked} | {span} | {win_s} | "
              f"{mb(r['bound']):.1f} | {100 * r['fio'] / r['bound']:.0f}% | {peak} |")
    print()
    for r in results:
        if r["snap"]:
            print(f"mid-run sockets {r['mode']} {r['workload']}: {r['snap']}")
    if mismatches:
        raise H.Fail("replica mismatch:\n" + "\n".join(mismatches))
    print("replica check: every secondary store equals its primary store")


if __name__ == "__main__":
    H.main(body, name="wan_throughput")
