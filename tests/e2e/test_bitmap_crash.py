#!/usr/bin/python3
"""The persistent bitmap survives kill -9: after a crash only the chunks written meanwhile move.

A pair (64 MiB, --bitmap=F,65536,1) does its full initial sync and its bitmap empties. Then three
crashes, each starting from an in-sync pair with an empty bitmap and a known set of written chunks
(seeded, printed):

A. primary killed: the secondary is frozen (SIGSTOP) so no write is acked, 37 distinct chunks
   are written through NBD, the primary gets SIGKILL, the secondary SIGCONT. `replctl bitmap
   examine --json F` counts 37 dirty chunks and the file's bits are exactly those chunks. The
   primary restarts on the same file: its log says "37 chunks flagged for resync (after a
   crash)", the resync moves exactly 37 x 64 KiB (resynced_bytes_total and resync_total_bytes),
   never a full copy; stores equal.
B. secondary killed: the secondary is frozen, set S1 is written (unacked), the secondary gets
   SIGKILL, set S2 is written while it is down (the primary keeps running and serving), the
   secondary restarts: the resync moves exactly |S1 u S2| chunks; stores equal.
C. both killed: the secondary is frozen, set S3 is written, both get SIGKILL, both restart: the
   file holds exactly S3, the resync moves exactly |S3| chunks; stores equal.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK


def examine_json(bm):
    import json
    r = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm])
    doc = json.loads(r.stdout)
    H.log(f"examine --json: dirty_chunks={doc['dirty_chunks']} state={doc['state']} "
          f"chunk_size={doc['chunk_size']} generation={doc['generation']}")
    return doc


def write_chunks(prim, chunks, rng):
    """One write per chunk (random length and 512-aligned offset inside it, random data)."""
    h = H.nbd_connect(prim.uri)
    try:
        for c in sorted(chunks):
            n = rng.choice([4096, 8192, 16384, 32768, 65536])
            off = c * CHUNK + rng.randrange(0, (CHUNK - n) // 512 + 1) * 512
            h.pwrite(rng.randbytes(n), off)
    finally:
        h.shutdown()
    H.log(f"wrote {len(chunks)} chunks through NBD: {sorted(chunks)}")


def wait_dirty(prim, n, what):
    H.wait_for(lambda: prim.status()["dirty_chunks"] == n, 10,
               f"{prim.name} dirty_chunks == {n} ({what})", procs=[prim.proc])


def log_has(proc, text):
    with open(proc.log_path, "rb") as f:
        return text in f.read().decode(errors="replace")


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    spec = f"{bm},{CHUNK},1"
    sec = case.secondary(volume="crash", size="64M")
    prim = case.primary(sec.port, volume="crash", size="64M", bitmap=spec)
    st = H.wait_clean_bitmap(prim, sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "initial full sync bytes")
    H.check_eq(st["bitmap_file"], str(bm), "bitmap_file")
    H.assert_same_files(prim.store, sec.store)

    # ---- A: the primary is killed with writes unacked ---------------------------------------
    S = set(rng.sample(range(NCHUNKS), 37))
    H.log(f"A: chunk set ({len(S)}): {sorted(S)}")
    sec.freeze()
    try:
        write_chunks(prim, S, rng)
        wait_dirty(prim, len(S), "A: writes unacked")
        prim.kill9()
    finally:
        sec.thaw()
    doc = examine_json(bm)
    H.check_eq(doc["state"], "running", "A: examine state after kill -9 of the primary")
    H.check_eq(doc["dirty_chunks"], len(S), "A: examine dirty_chunks after kill -9")
    got = H.bitmap_file_bits(bm, NCHUNKS)
    H.check(got == S, f"A: bits in the file != written chunks: missing {sorted(S - got)}, "
            f"extra {sorted(got - S)}")
    prim.restart()
    H.wait_for(lambda: log_has(prim.proc, f"{len(S)} chunks flagged for resync (after a crash)"),
               10, "A: the primary's log line '37 chunks flagged for resync (after a crash)'",
               procs=[prim.proc])
    st = H.check_resync(prim, sec, len(S), CHUNK, SIZE, 0, "A (primary kill -9)")
    H.check_eq(st["generation"], doc["generation"], "A: the primary kept the file's generation")

    # ---- B: the secondary is killed; more writes while it is down ----------------------------
    st = H.wait_clean_bitmap(prim, sec)
    before = st["resynced_bytes_total"]
    S1 = set(rng.sample(range(NCHUNKS), 23))
    S2 = set(rng.sample(range(NCHUNKS), 29))
    H.log(f"B: S1 ({len(S1)}, while frozen): {sorted(S1)}; S2 ({len(S2)}, while down): "
          f"{sorted(S2)}; union {len(S1 | S2)}")
    sec.freeze()
    try:
        write_chunks(prim, S1, rng)
        wait_dirty(prim, len(S1), "B: S1 unacked")
        sec.kill9()  # SIGKILL ends a stopped process too
    finally:
        sec.thaw()
    write_chunks(prim, S2, rng)  # the primary keeps serving
    H.wait_for(lambda: prim.status()["connection"] != "connected", 15,
               "B: the primary to notice the lost secondary", procs=[prim.proc])
    wait_dirty(prim, len(S1 | S2), "B: S1 u S2 while the secondary is down")
    H.check(prim.alive(), "B: the primary died")
    sec.restart()
    H.check_resync(prim, sec, len(S1 | S2), CHUNK, SIZE, before, "B (secondary kill -9)")

    # ---- C: both killed -----------------------------------------------------------------------
    st = H.wait_clean_bitmap(prim, sec)
    S3 = set(rng.sample(range(NCHUNKS), 41))
    H.log(f"C: chunk set ({len(S3)}): {sorted(S3)}")
    sec.freeze()
    try:
        write_chunks(prim, S3, rng)
        wait_dirty(prim, len(S3), "C: writes unacked")
        prim.kill9()
        sec.kill9()
    finally:
        sec.thaw()
    doc = examine_json(bm)
    H.check_eq(doc["dirty_chunks"], len(S3), "C: examine dirty_chunks after both kill -9")
    got = H.bitmap_file_bits(bm, NCHUNKS)
    H.check(got == S3, f"C: bits in the file != written chunks: missing {sorted(S3 - got)}, "
            f"extra {sorted(got - S3)}")
    sec.restart()
    prim.restart()
    H.check_resync(prim, sec, len(S3), CHUNK, SIZE, 0, "C (both kill -9)")

    prim.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)
    doc = examine_json(bm)
    H.check_eq((doc["state"], doc["dirty_chunks"]), ("clean", 0), "state after a clean stop")


if __name__ == "__main__":
    H.main(body, default_seed=4242)
