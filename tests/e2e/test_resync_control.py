#!/usr/bin/python3
"""Operator control of a running resync (rate, pause, resume) and online bitmap rescale.

A pair (64 MiB, --bitmap=F,65536,1) syncs. Chunk layout (64 KiB chunks): the resync sets live in
chunks 256..1023, the live writes made during a pause in chunks 240..247, the load in chunks
0..15 (1 MiB span).

1. Rate and pause. The secondary stops (SIGTERM); 256 distinct chunks (16 MiB, seeded) are
   written through NBD; `replctl resync rate 2M`; the secondary restarts. Over >= 2 s the resync
   must not go faster than the limit (upper bound only: 2 MiB/s x 1.3 + two chunks, the interval
   measured generously). `replctl resync pause`: resync_paused true and resync_done_bytes does not
   move for 1 s; writes made through NBD meanwhile still reach the secondary's store. `resync rate
   0` + `resync resume`: in_sync, exactly the 256 chunks were resynced, stores equal.
2. Online rescale to 16 KiB. The secondary stops, 64 chunks are written, the resync is paused
   and the secondary restarts, so those chunks stay pending; a random-write load runs; `replctl
   bitmap rescale --chunk=16384` completes: the reply's bits x chunk do not shrink, chunk_size
   becomes 16384 (status and the file), the pending chunks are still dirty (at least 4 x 64 of
   16 KiB), bits x chunk >= before; the load keeps completing writes; resume, stop the load,
   in_sync, stores equal. 2b: 8 more online rescales (64K <-> 16K) under load, each completes.
3. Online rescale back to 64 KiB, the same way (32 pending 64 KiB chunks = 128 at 16 KiB) with the
   resync running (rate-limited to 2 MiB/s) and the load on: chunk_size 65536, bits x chunk do not
   shrink; resync rate 0, in_sync, stores equal.
"""
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
RATE = 2 * H.MiB  # 16 MiB take 8 s: slow status polls (TSan build, -j2) still see the pass


def ctl(prim, *args, timeout=40):
    H.log(f"$ replctl --admin-socket={prim.admin} {' '.join(args)}")
    r = H.replctl(prim.admin, *args, timeout=timeout)
    H.check(r.returncode == 0, f"replctl {' '.join(args)}: exit {r.returncode}\n"
            f"stdout: {r.stdout}\nstderr: {r.stderr}")
    H.log(f"  -> {r.stdout.strip()}")
    return r.stdout


def write_chunks(prim, chunks, rng):
    """Each chunk fully rewritten with random data; returns {offset: data}."""
    h = H.nbd_connect(prim.uri)
    written = {}
    try:
        for c in sorted(chunks):
            data = rng.randbytes(CHUNK)
            h.pwrite(data, c * CHUNK)
            written[c * CHUNK] = data
    finally:
        h.shutdown()
    H.log(f"wrote {len(chunks)} chunks ({len(chunks) * CHUNK} bytes) through NBD")
    return written


def timed_status(prim):
    """(time before the call, status, time after the call)."""
    t0 = time.monotonic()
    st = prim.status()
    return t0, st, time.monotonic()


def rescale(prim, chunk):
    out = ctl(prim, "bitmap", "rescale", f"--chunk={chunk}")
    m = re.search(r"(\d+) -> (\d+) byte chunks, (\d+) -> (\d+) bits set", out)
    H.check(m is not None, f"unexpected rescale output {out!r}")
    old_chunk, new_chunk, old_bits, new_bits = map(int, m.groups())
    H.check_eq((old_chunk, new_chunk), (prim_chunk_before[0], chunk), "rescale reply chunk sizes")
    H.check(new_bits * new_chunk >= old_bits * old_chunk,
            f"rescale {old_chunk} -> {new_chunk}: bits cover fewer bytes after ({new_bits} x "
            f"{new_chunk}) than before ({old_bits} x {old_chunk}): information lost")
    prim_chunk_before[0] = chunk
    return old_bits, new_bits


prim_chunk_before = [CHUNK]


def pending_set(prim, sec, rng, lo, hi, n, what):
    """Stop the secondary, dirty n chunks in [lo, hi), pause the resync, restart the secondary.
    Returns the chunk set (in 64 KiB chunks)."""
    chunks = set(rng.sample(range(lo, hi), n))
    H.log(f"{what}: pending chunks ({n}): {sorted(chunks)}")
    sec.stop()
    write_chunks(prim, chunks, rng)
    ctl(prim, "resync", "pause")
    sec.restart()
    H.wait_for(lambda: prim.status()["connection"] == "connected", 20,
               f"{what}: the primary to reconnect", procs=[prim.proc, sec.proc])
    return chunks


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="ctl", size="64M")
    prim = case.primary(sec.port, volume="ctl", size="64M", bitmap=f"{bm},{CHUNK},1")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)

    # ---- 1. rate limit and pause ---------------------------------------------------------------
    S = set(rng.sample(range(256, NCHUNKS), 256))
    H.log(f"1: {len(S)} chunks to resync: {sorted(S)}")
    sec.stop()
    write_chunks(prim, S, rng)
    H.wait_for(lambda: prim.status()["dirty_chunks"] == len(S), 10, "256 dirty chunks",
               procs=[prim.proc])
    before = prim.status()["resynced_bytes_total"]
    ctl(prim, "resync", "rate", "2M")
    H.check_eq(prim.status()["resync_rate_limit_bytes_per_second"], RATE,
               "resync_rate_limit_bytes_per_second")
    sec.restart()
    # resync_done/total_bytes describe the last pass (here the initial full sync) until a new
    # pass starts: wait for the new pass itself.
    def new_pass():
        t = timed_status(prim)
        st = t[1]
        if (st["sync_state"] == "resyncing" and st["resync_total_bytes"] == len(S) * CHUNK
                and st["resync_done_bytes"] > 0):
            return t
        return None
    first = H.wait_for(new_pass, 20, f"a resync pass of {len(S)} chunks to start and progress",
                       procs=[prim.proc, sec.proc])
    H.log(f"1: pass started: {H.brief(first[1])}, resync_done_bytes="
          f"{first[1]['resync_done_bytes']}, resync_total_bytes={first[1]['resync_total_bytes']}")
    time.sleep(2.2)
    last = timed_status(prim)
    interval = last[2] - first[0]  # generous: the longest the two samples can be apart
    moved = last[1]["resync_done_bytes"] - first[1]["resync_done_bytes"]
    limit = RATE * interval * 1.3 + 2 * CHUNK
    H.log(f"1: resync moved {moved} bytes in <= {interval:.2f} s = {moved / interval / H.MiB:.2f} "
          f"MiB/s (limit 2 MiB/s, bound {limit:.0f} bytes); reported rate "
          f"{last[1]['resync_rate_bytes_per_second']}")
    H.check(moved > 0, f"1: the rate-limited resync made no progress in {interval:.2f} s")
    H.check(moved <= limit, f"1: the resync moved {moved} bytes in {interval:.2f} s, more than "
            f"2 MiB/s x 1.3 + 2 chunks = {limit:.0f}: the rate limit is not applied")
    H.check(last[1]["sync_state"] == "resyncing" and last[1]["resync_done_bytes"] < len(S) * CHUNK,
            f"1: expected the resync still running for the pause check: {last[1]}")

    ctl(prim, "resync", "pause")
    H.wait_for(lambda: prim.status()["resync_paused"] is True, 5, "resync_paused true",
               procs=[prim.proc])
    time.sleep(0.5)  # chunks already queued before the pause may still be acknowledged
    a = prim.status()
    t_a = time.monotonic()
    live = set(range(240, 248))
    written = write_chunks(prim, live, rng)  # not resync: live writes must still replicate

    def on_secondary():
        return all(H.pread(sec.store, off, len(d)) == d for off, d in written.items())
    H.wait_for(on_secondary, 10, "1: live writes made during the pause to reach the secondary",
               interval=0.1, procs=[prim.proc, sec.proc])
    H.log("1: live writes made during the pause are on the secondary's store")
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t_a)))  # at least 1 s after `a`
    b = prim.status()
    H.log(f"1: paused: resync_done_bytes {a['resync_done_bytes']} -> {b['resync_done_bytes']} "
          f"over >= 1 s; dirty {a['dirty_chunks']} -> {b['dirty_chunks']}")
    H.check(b["resync_paused"] is True, f"1: resync_paused not true: {b}")
    H.check_eq(b["resync_done_bytes"], a["resync_done_bytes"], "1: resync_done_bytes while paused")
    H.check_eq(b["resynced_bytes_total"], a["resynced_bytes_total"],
               "1: resynced_bytes_total while paused")
    H.check(b["dirty_chunks"] > 0 and b["sync_state"] != "in_sync",
            f"1: nothing left to resync while paused: {b}")

    ctl(prim, "resync", "rate", "0")
    ctl(prim, "resync", "resume")
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check(st["resync_paused"] is False, f"1: resync_paused after resume: {st}")
    delta = st["resynced_bytes_total"] - before
    H.check(delta == len(S) * CHUNK, f"1: the resync moved {delta} bytes, expected exactly "
            f"{len(S)} x {CHUNK} = {len(S) * CHUNK} (pause/resume must not resend nor skip)")
    H.assert_same_files(prim.store, sec.store)

    # ---- 2. online rescale 64K -> 16K under load with pending chunks ----------------------------
    D = pending_set(prim, sec, rng, 256, NCHUNKS, 64, "2")
    H.wait_for(lambda: prim.status()["bitmap_bits_set"] == len(D), 15,
               f"2: bitmap_bits_set == {len(D)} (older bits lazily cleared)", interval=0.2,
               procs=[prim.proc, sec.proc])
    load = H.Load(case, prim.uri, SIZE, case.seed + 2, qd=16, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB, span=1 * H.MiB)
    load.wait_progress(300, procs=[prim.proc, sec.proc])
    s0 = prim.status()
    H.log(f"2: before rescale: {H.brief(s0)}")
    old_bits, new_bits = rescale(prim, 16384)
    s1 = prim.status()
    H.log(f"2: after rescale: {H.brief(s1)}, chunk_size={s1['chunk_size']}")
    H.check_eq(s1["chunk_size"], 16384, "2: chunk_size after the online rescale")
    H.check(old_bits >= len(D), f"2: the reply's old bits {old_bits} < pending chunks {len(D)}")
    H.check(s1["dirty_chunks"] >= 4 * len(D),
            f"2: dirty_chunks {s1['dirty_chunks']} < 4 x {len(D)} pending 64 KiB chunks")
    H.check(s1["bitmap_bits_set"] * 16384 >= s0["bitmap_bits_set"] * CHUNK,
            f"2: bits cover fewer bytes after ({s1['bitmap_bits_set']} x 16384) than before "
            f"({s0['bitmap_bits_set']} x {CHUNK})")
    doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm]).stdout)
    H.check_eq(doc["chunk_size"], 16384, "2: chunk_size in the file")
    H.check(doc["dirty_chunks"] >= 4 * len(D), f"2: the file flags fewer than 4 x {len(D)} "
            f"chunks: {doc}")
    load.wait_progress(300, procs=[prim.proc, sec.proc])  # the load goes on after the rescale
    ctl(prim, "resync", "resume")
    load.stop()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check_eq(st["chunk_size"], 16384, "2: chunk_size once in sync")
    H.assert_same_files(prim.store, sec.store)

    # ---- 2b. more online rescales under load: each must complete (the quiesce must wait for
    # every write, not fail on one still finishing) -----------------------------------------------
    load = H.Load(case, prim.uri, SIZE, case.seed + 22, qd=16, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB, span=1 * H.MiB)
    load.wait_progress(300, procs=[prim.proc, sec.proc])
    for chunk in [CHUNK, 16384] * 4:
        rescale(prim, chunk)
    load.wait_progress(100, procs=[prim.proc, sec.proc])
    load.stop()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check_eq(st["chunk_size"], 16384, "2b: chunk_size after 8 rescales")
    H.assert_same_files(prim.store, sec.store)

    # ---- 3. online rescale back to 64K with the resync running and the load on -----------------
    D2 = pending_set(prim, sec, rng, 256, NCHUNKS, 32, "3")
    load = H.Load(case, prim.uri, SIZE, case.seed + 3, qd=16, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB, span=1 * H.MiB)
    load.wait_progress(300, procs=[prim.proc, sec.proc])
    ctl(prim, "resync", "rate", "2M")
    ctl(prim, "resync", "resume")
    s0 = prim.status()
    H.log(f"3: before rescale: {H.brief(s0)}, resync_done_bytes={s0['resync_done_bytes']}")
    H.check(s0["dirty_chunks"] > 0, f"3: nothing pending before the rescale: {s0}")
    old_bits, new_bits = rescale(prim, CHUNK)
    s1 = prim.status()
    H.log(f"3: after rescale: {H.brief(s1)}, chunk_size={s1['chunk_size']}")
    H.check_eq(s1["chunk_size"], CHUNK, "3: chunk_size after the online rescale back")
    load.wait_progress(300, procs=[prim.proc, sec.proc])
    ctl(prim, "resync", "rate", "0")
    load.stop()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check_eq(st["chunk_size"], CHUNK, "3: chunk_size once in sync")
    H.stop_pair_and_compare(prim, sec)
    doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm]).stdout)
    H.check_eq((doc["chunk_size"], doc["state"], doc["dirty_chunks"]), (CHUNK, "clean", 0),
               "the file after a clean stop")


if __name__ == "__main__":
    H.main(body, default_seed=8086)
