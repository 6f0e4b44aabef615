#!/usr/bin/python3
"""Resync after a disconnect: blockrepl's bitmap resync against a full copy with nbdcopy and
against `rsync --inplace` of the image file, in the same run.

    tests/bench/resync.py [--size 4G] [--fractions 0.001,0.01,0.1] [--json FILE] [--keep]

A repl-primary/repl-secondary pair (64 KiB chunks) starts in sync on a volume of random data.
For each fraction: the pair is disconnected (`replctl disconnect`), a client rewrites 4 KiB in
that fraction of the chunks (random chunks), the secondary's store is copied (the "older copy"),
then `replctl connect` and the resync runs to in_sync (`replctl wait`). Measured: the resync's
wall time (from the connect command, so about 40 ms of replctl's own start count), its bytes
on the wire (loopback byte counters over the resync, so gRPC framing and TCP/IP headers count)
against the dirty bytes (chunks x 64 KiB), and each agent's peak RSS over the resync (VmHWM,
reset before it). Then the same update is done by
`rsync --inplace --no-whole-file --ignore-times` of the primary's image over the older copy (its
"Total bytes sent/received" are the wire bytes), and once per run a full `nbdcopy` of the volume
from the primary to an nbdkit export (wire bytes: loopback counters). Each resync ends with cmp
of the two stores. Not a CI test.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402  (process, port and wait helpers)

CHUNK = 64 * 1024


def lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            if line.strip().startswith("lo:"):
                return int(line.split(":")[1].split()[0])
    return 0


def status(admin):
    r = subprocess.run([C.BIN / "replctl", f"--admin-socket={admin}", "status", "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["volumes"][0]


def wait_in_sync(admin, timeout):
    """`replctl wait`: one process polling the agent every 10 ms over one admin channel."""
    subprocess.run([C.BIN / "replctl", f"--admin-socket={admin}", "wait", "--timeout",
                    str(timeout), "--interval", "0.01"], check=True, capture_output=True)


def fill_random(path, size):
    block = 4 << 20
    with open(path, "wb") as f:
        for _ in range(size // block):
            f.write(os.urandom(block))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="4G")
    ap.add_argument("--fractions", default="0.001,0.01,0.1")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    subprocess.run([C.ROOT / "scripts" / "install-deps.sh", "--bench"], check=True)
    import nbd  # Debian's python3-libnbd
    units = {"M": 2**20, "G": 2**30}
    size = int(a.size[:-1]) * units[a.size[-1]]
    chunks = size // CHUNK
    d = Path(tempfile.mkdtemp(prefix="blockrepl-resync."))
    rng = random.Random(7)
    rows = []
    try:
        prim, sec = d / "primary.img", d / "secondary.img"
        C.log(f"bench: filling {a.size} with random data in {d}")
        fill_random(prim, size)
        shutil.copyfile(prim, sec)
        sport, nport = C.free_port(), C.free_port()
        padmin, sadmin = d / "p.sock", d / "s.sock"
        secondary = C.spawn([C.BIN / "repl-secondary", "--volume=vol", f"--store={sec}",
                             f"--listen=127.0.0.1:{sport}", f"--admin-socket={sadmin}"],
                            d / "secondary.log")
        C.wait_for(lambda: C.port_open(sport), 10, "the secondary")
        primary = C.spawn([C.BIN / "repl-primary", "--volume=vol", f"--store={prim}",
                           f"--secondary=127.0.0.1:{sport}", f"--nbd-listen=127.0.0.1:{nport}",
                           f"--admin-socket={padmin}", f"--bitmap={d / 'vol.bm'},64K,1",
                           "--assume-clean"], d / "primary.log")
        C.wait_for(lambda: C.port_open(nport), 10, "the primary")
        wait_in_sync(padmin, 60)

        # A full copy with nbdcopy: primary export -> nbdkit on another file.
        dst, kport = d / "nbdcopy-dst.img", C.free_port()
        C.make_file(dst, size, fill=False)  # sparse: nbdcopy writes it all
        C.spawn(["nbdkit", "-f", "-i", "127.0.0.1", "-p", kport, "file", dst], d / "nbdkit.log")
        C.wait_for(lambda: C.port_open(kport), 10, "nbdkit")
        lo0, t0 = lo_bytes(), time.monotonic()
        subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{nport}/vol", f"nbd://127.0.0.1:{kport}/"],
                       check=True)
        full = {"seconds": time.monotonic() - t0, "wire_bytes": lo_bytes() - lo0}
        C.log(f"full copy with nbdcopy: {full['seconds']:.1f} s, {full['wire_bytes'] / 2**20:.0f}"
              f" MiB through loopback (read from the primary + written to nbdkit)")
        dst.unlink()

        for frac in (float(x) for x in a.fractions.split(",")):
            subprocess.run([C.BIN / "replctl", f"--admin-socket={padmin}", "disconnect"],
                           check=True, capture_output=True)
            dirty = sorted(rng.sample(range(chunks), max(1, int(chunks * frac))))
            h = nbd.NBD()
            h.connect_uri(f"nbd://127.0.0.1:{nport}/vol")
            for c in dirty:
                h.pwrite(os.urandom(4096), c * CHUNK + rng.randrange(0, CHUNK - 4096, 4096))
            h.flush()
            h.shutdown()
            older = d / "older.img"
            shutil.copyfile(sec, older)
            # The copy (for rsync below) leaves 4 GiB dirty: written back now, or the resync's
            # final fdatasync would queue behind it on the disk.
            os.sync()
            before = status(padmin)["resynced_bytes_total"]
            for p in (primary, secondary):
                C.reset_peak_rss(p.pid)
            lo0, t0 = lo_bytes(), time.monotonic()
            # --timeout 0: back once the agent has the request; then `replctl wait` polls the
            # agent every 10 ms over one admin channel. (Polling with a `replctl status` process
            # every 10 ms, as this did before, took 40% of the two cores during the resync.)
            subprocess.run([C.BIN / "replctl", f"--admin-socket={padmin}", "connect",
                            "--timeout", "0"], check=True, capture_output=True)
            wait_in_sync(padmin, 600)
            seconds, wire = time.monotonic() - t0, lo_bytes() - lo0
            resynced = status(padmin)["resynced_bytes_total"] - before
            rss = [C.peak_rss_mib(p.pid) for p in (primary, secondary)]
            same = subprocess.run(["cmp", "-s", prim, sec]).returncode == 0
            # rsync of the image over the older copy (what it would send over ssh).
            t1 = time.monotonic()
            # --ignore-times: rsync's quick check skips a file whose size and mtime match, and
            # the two images can share both.
            r = subprocess.run(["rsync", "--inplace", "--no-whole-file", "--ignore-times",
                                "--stats", str(prim), str(older)],
                               capture_output=True, text=True, check=True)
            rsync_s = time.monotonic() - t1
            sent = int(re.search(r"Total bytes sent: ([\d,]+)", r.stdout)[1].replace(",", ""))
            recv = int(re.search(r"Total bytes received: ([\d,]+)", r.stdout)[1].replace(",", ""))
            older.unlink()
            row = {"fraction": frac, "dirty_chunks": len(dirty), "dirty_bytes": len(dirty) * CHUNK,
                   "resync_seconds": seconds, "resync_wire_bytes": wire,
                   "resynced_bytes": resynced, "stores_equal": same,
                   "wire_vs_dirty": wire / (len(dirty) * CHUNK),
                   "vs_nbdcopy_time": seconds / full["seconds"],
                   "rsync_seconds": rsync_s, "rsync_wire_bytes": sent + recv,
                   "peak_rss_mib": {"primary": rss[0], "secondary": rss[1]}}
            rows.append(row)
            C.log(f"{frac * 100:5.1f}% dirty ({len(dirty)} chunks, "
                  f"{row['dirty_bytes'] / 2**20:.1f} MiB): resync {seconds:.2f} s, "
                  f"{wire / 2**20:.1f} MiB on the wire ({row['wire_vs_dirty']:.3f}x dirty), "
                  f"{row['vs_nbdcopy_time']:.4f} of the nbdcopy time; rsync {rsync_s:.1f} s, "
                  f"{(sent + recv) / 2**20:.1f} MiB; peak RSS primary {rss[0]:.0f} MiB, secondary "
                  f"{rss[1]:.0f} MiB; stores {'equal' if same else 'DIFFER'}")
        print()
        print("| dirty | chunks | resync s | resync wire MiB | wire / dirty | time vs nbdcopy | "
              "rsync s | rsync wire MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['fraction'] * 100:g}% | {r['dirty_chunks']} | {r['resync_seconds']:.2f} | "
                  f"{r['resync_wire_bytes'] / 2**20:.1f} | {r['wire_vs_dirty']:.3f}x | "
                  f"1/{1 / r['vs_nbdcopy_time']:.0f} | {r['rsync_seconds']:.1f} | "
                  f"{r['rsync_wire_bytes'] / 2**20:.1f} |")
        print(f"| full copy (nbdcopy) | {chunks} | {full['seconds']:.2f} | "
              f"{full['wire_bytes'] / 2**20:.0f} | | 1 | | |")
        if a.json:
            Path(a.json).write_text(json.dumps({"size": a.size, "nbdcopy": full, "rows": rows},
                                               indent=1))
        if not all(r["stores_equal"] for r in rows):
            sys.exit(1)
    finally:
        C.stop_all()
        if a.keep:
            C.log(f"bench: kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
