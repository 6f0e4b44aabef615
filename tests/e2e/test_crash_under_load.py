#!/usr/bin/python3
"""kill -9 of the primary in the middle of a random-write load: the restart resyncs exactly the
chunks the bitmap file flags at the crash, never a full copy, and the stores end equal.

A pair (64 MiB = 1024 chunks, --bitmap=F,65536,1) does its initial sync and its bitmap empties.
Then three rounds (all choices seeded and printed; BLOCKREPL_SEED changes them):

- a harness Load (random 512-aligned writes of 4..64 KiB, queue depth 1, 4 or 16) runs over the
  first SPAN bytes of the volume (8..48 MiB, so the crash can never legitimately flag every chunk);
- in rounds where `freeze` is chosen, the secondary is frozen (SIGSTOP) part way through the load,
  so the window fills with writes the secondary never acknowledged;
- after a random number of completed writes and a random delay, the primary gets SIGKILL (then
  the secondary SIGCONT, the load process ends on its own with NBD errors).

At the crash, `replctl bitmap examine --json F` gives D = dirty_chunks (state "running"); the set
bits read from the file are exactly D chunks, D > 0, all inside the load's span. The primary
restarts on the same store and bitmap file: its log says "D chunks flagged for resync (after a
crash)"; it reaches in_sync (secondary too) having resynced exactly D chunks (resynced_chunks_total
== D, resynced_bytes_total == D x 64 KiB since the restart, resync_total_chunks == D,
resync_total_bytes == D x 64 KiB, which is < the volume size: never a full copy), without
reconnecting (connects_total == 1), and the two stores are equal byte for byte. Before the next
round the bitmap empties again.
"""
import json
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
PAGES_OFFSET = 8192  # bitmap file: two 4 KiB header slots, then 4 KiB pages of little-endian bits
ROUNDS = 3


def examine_json(bm):
    r = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm])
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise H.Fail(f"examine --json printed invalid JSON ({e}): {r.stdout!r}")
    H.log(f"examine --json: dirty_chunks={doc['dirty_chunks']} state={doc['state']} "
          f"chunk_size={doc['chunk_size']} generation={doc['generation']}")
    return doc


def file_dirty_chunks(bm):
    """The set bits of page 0 of the bitmap file (1024 chunks fit in one page)."""
    bits = int.from_bytes(H.pread(bm, PAGES_OFFSET, NCHUNKS // 8), "little")
    return {c for c in range(NCHUNKS) if bits >> c & 1}


def log_has(proc, text):
    """`text` in the log of the current run of `proc` (the log file is shared by restarts)."""
    with open(proc.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    return text in log[log.rfind("\n=== ") + 1:]


def wait_clean_bitmap(prim, sec, label):
    H.wait_for(lambda: prim.status()["bitmap_bits_set"] == 0, 20,
               f"{label}: bitmap_bits_set == 0 (lazy clearing, 1 s period)", interval=0.1,
               procs=[prim.proc, sec.proc])


def crash_round(case, rng, prim, sec, bm, rnd):
    label = f"round {rnd}"
    span = rng.choice([8, 16, 32, 48]) * H.MiB
    qd = rng.choice([1, 4, 16])
    freeze = rnd == 1 or rng.random() < 0.5  # at least one round with unacked writes
    before_kill = rng.randint(50, 600)       # completed writes before the crash sequence
    delay = rng.uniform(0.0, 0.8)
    H.log(f"{label}: span {span // H.MiB} MiB ({span // CHUNK} chunks), qd {qd}, freeze "
          f"{freeze}, kill after {before_kill} writes + {delay:.2f} s")
    load = H.Load(case, prim.uri, SIZE, case.seed * 100 + rnd, qd=qd, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB, span=span)
    frozen = False
    try:
        load.wait_progress(before_kill, timeout=30, procs=[prim.proc, sec.proc])
        if freeze:
            H.log(f"{label}: SIGSTOP {sec.name} pid {sec.proc.pid}")
            os.kill(sec.proc.pid, signal.SIGSTOP)
            frozen = True
            # Writes keep completing until the window (512 writes / 64 MiB) is full.
            more = rng.randint(1, 200)
            start = load.completed()
            H.wait_for(lambda: load.completed() >= start + more or (
                lambda st: st["inflight_writes"] >= st["max_inflight_writes"])(prim.status()),
                20, f"{label}: {more} more writes or a full window while frozen",
                procs=[prim.proc, load.proc])
        time.sleep(delay)
        st = prim.status()
        H.log(f"{label}: just before the crash: {H.brief(st)}; load completed "
              f"{load.completed()} writes")
        prim.kill9()
    finally:
        if frozen and sec.alive():
            os.kill(sec.proc.pid, signal.SIGCONT)
            H.log(f"{label}: SIGCONT {sec.name}")
    # The load loses its server: it ends with NBD errors; stop it by PID either way.
    H.wait_for(lambda: not load.proc.alive(), 20, f"{label}: the load to end after the crash")
    load.stop(expect_ok=False)

    doc = examine_json(bm)
    d = doc["dirty_chunks"]
    H.check_eq(doc["state"], "running", f"{label}: examine state after kill -9")
    H.check_eq(doc["chunk_size"], CHUNK, f"{label}: examine chunk_size")
    got = file_dirty_chunks(bm)
    H.check_eq(len(got), d, f"{label}: set bits in the file vs examine's dirty_chunks")
    H.check(d > 0, f"{label}: no bit set at a crash under load")
    outside = sorted(c for c in got if c >= span // CHUNK)
    H.check(not outside, f"{label}: bits set outside the written span (chunks >= "
            f"{span // CHUNK}): {outside[:20]}")
    H.log(f"{label}: {d} chunks flagged at the crash ({d * CHUNK} bytes of {SIZE})")

    diff = H.compare_files(prim.store, sec.store)
    H.log(f"{label}: before the restart the stores are "
          f"{'different: ' + diff if diff else 'equal'}")
    prim.restart()
    H.wait_for(lambda: log_has(prim.proc, f": {d} chunks flagged for resync (after a crash)"), 10,
               f"{label}: the primary's log line '{d} chunks flagged for resync (after a crash)'",
               procs=[prim.proc])
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.log(f"{label}: after restart: resynced_chunks_total={st['resynced_chunks_total']}, "
          f"resynced_bytes_total={st['resynced_bytes_total']}, resync_total_chunks="
          f"{st['resync_total_chunks']}, resync_total_bytes={st['resync_total_bytes']}, "
          f"connects_total={st['connects_total']}")
    H.check(st["resync_total_bytes"] < SIZE and st["resynced_bytes_total"] < SIZE,
            f"{label}: a FULL copy after a crash with {d} chunks flagged: {st}")
    H.check(st["resynced_bytes_total"] <= d * CHUNK,
            f"{label}: the restart resynced {st['resynced_bytes_total']} bytes, more than the "
            f"{d} chunks flagged at the crash ({d * CHUNK} bytes): {H.brief(st)}")
    H.check_eq(st["connects_total"], 1, f"{label}: connects_total since the restart")
    H.check_eq(st["resynced_chunks_total"], d, f"{label}: resynced_chunks_total since the restart")
    H.check_eq(st["resynced_bytes_total"], d * CHUNK,
               f"{label}: resynced_bytes_total since the restart")
    H.check_eq(st["resync_total_chunks"], d, f"{label}: resync_total_chunks of the pass")
    H.check_eq(st["resync_total_bytes"], d * CHUNK, f"{label}: resync_total_bytes of the pass")
    sst = sec.status()
    H.check(sst["consistent"] is True and sst["connection"] == "connected",
            f"{label}: secondary not consistent+connected after the resync: {sst}")
    H.check_eq(sst["generation"], st["generation"], f"{label}: the secondary's followed history")
    H.assert_same_files(prim.store, sec.store)
    wait_clean_bitmap(prim, sec, label)


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="cul", size="64M")
    prim = case.primary(sec.port, volume="cul", size="64M", bitmap=f"{bm},{CHUNK},1")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "initial full sync bytes")
    gen = st["generation"]
    wait_clean_bitmap(prim, sec, "after the initial sync")

    for rnd in range(1, ROUNDS + 1):
        crash_round(case, rng, prim, sec, bm, rnd)
        H.check_eq(prim.status()["generation"], gen, f"round {rnd}: the primary's generation")

    prim.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)
    doc = examine_json(bm)
    H.check_eq((doc["state"], doc["dirty_chunks"]), ("clean", 0), "the file after a clean stop")


if __name__ == "__main__":
    H.main(body, default_seed=9001)
