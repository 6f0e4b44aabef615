#!/usr/bin/python3
"""A bitmap file is a history: a new file means a full sync, an intact clean one means none.

A pair (64 MiB, --bitmap=F,65536,1) syncs; random data is written through NBD and the pair
converges. 1. The primary stops with SIGTERM: exit 0, the file is left clean (`examine`: state
"clean", 0 dirty chunks, clean true). It restarts on the intact file: the log says "0 chunks
flagged for resync (clean shutdown)", it reaches in_sync with resynced_bytes_total == 0 and keeps
the file's generation. 2. The primary stops cleanly again, the file is deleted and the primary
starts with a new file: a new volume UUID, which the secondary (paired with the old one)
refuses ("wrong volume", nothing applied, its store untouched); with --force-full-resync (first
at the same path, then at another path) the secondary re-pairs and follows another history, so
the primary must do a FULL resync (resync_total_bytes == the volume size,
resynced_bytes_total == the volume size), never silently none; stores equal each time.
3. A new file again, its full sync limited to 8 MiB/s and the primary stopped cleanly midway:
the file is "clean" but still flags the uncopied chunks, and the restart resyncs at least those;
stores equal.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB


def examine_json(bm):
    r = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm])
    doc = json.loads(r.stdout)
    H.log(f"examine --json: {doc}")
    return doc


def log_has(proc, text):
    with open(proc.log_path, "rb") as f:
        return text in f.read().decode(errors="replace")


def write_random(prim, rng, n):
    h = H.nbd_connect(prim.uri)
    try:
        for _ in range(n):
            size = rng.choice([4096, 65536, 262144])
            off = rng.randrange(0, (SIZE - size) // 4096 + 1) * 4096
            h.pwrite(rng.randbytes(size), off)
        h.flush()
    finally:
        h.shutdown()
    H.log(f"wrote {n} random extents through NBD")


def start_primary(case, sec, store, bm, force=False):
    return case.primary(sec.port, volume="hist", store=store, size="64M",
                        bitmap=f"{bm},{CHUNK},1",
                        extra=["--force-full-resync"] if force else [])


def check_full_resync(case, prim, sec, label):
    # While the pass runs, or once it is over, the pass must cover the whole volume.
    st = H.wait_for(lambda: (lambda s: s if s["resync_total_bytes"] > 0 else None)(prim.status()),
                    30, f"{label}: a resync pass to start", procs=[prim.proc, sec.proc])
    H.log(f"{label}: first status with a resync pass: {H.brief(st)}, "
          f"resync_total_bytes={st['resync_total_bytes']}, sync_state={st['sync_state']}")
    H.check(st["resync_total_bytes"] == SIZE,
            f"{label}: resync_total_bytes {st['resync_total_bytes']} != volume size {SIZE}: "
            f"not a full resync; status {st}")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check(st["resynced_bytes_total"] == SIZE,
            f"{label}: resynced_bytes_total {st['resynced_bytes_total']} != volume size {SIZE} "
            f"(a new bitmap file must mean a FULL resync, never silently none); status {st}")
    H.check_eq(st["resync_total_bytes"], SIZE, f"{label}: resync_total_bytes after the pass")
    H.assert_same_files(prim.store, sec.store)
    return st


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="hist", size="64M")
    prim = start_primary(case, sec, case.path("primary.img"), bm)
    store = prim.store
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    write_random(prim, rng, 200)
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.assert_same_files(store, sec.store)
    gen = st["generation"]

    # 1. Clean stop, clean restart on the intact file: nothing to resync.
    prim.stop()
    doc = examine_json(bm)
    H.check_eq((doc["state"], doc["clean"], doc["dirty_chunks"]), ("clean", True, 0),
               "examine (state, clean, dirty_chunks) after SIGTERM")
    H.check_eq(doc["generation"], gen, "file generation vs the primary's")
    prim.restart()
    H.wait_for(lambda: log_has(prim.proc, "0 chunks flagged for resync (clean shutdown)"), 10,
               "the log line '0 chunks flagged for resync (clean shutdown)'", procs=[prim.proc])
    st = H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], 0, "resynced_bytes_total after a clean restart")
    H.check_eq(st["generation"], gen, "generation after a clean restart")
    H.assert_same_files(store, sec.store)

    # 2a. The file is deleted; a new file at the same path = a new history = full resync.
    write_random(prim, rng, 50)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    prim.stop()
    H.check_eq(examine_json(bm)["state"], "clean", "state after SIGTERM")
    os.unlink(bm)
    H.log(f"deleted {bm}; starting the primary with a new file at the same path")
    # A new file is a new volume UUID: the replica (paired with the old one) refuses it, and
    # nothing reaches its store, until the operator says so with --force-full-resync.
    applied = sec.status()["applied_seq"]
    digest = H.file_hash(sec.store)
    prim = start_primary(case, sec, store, bm)
    st = H.wait_for(lambda: "wrong volume" in prim.status()["last_error"] and prim.status(), 30,
                    "the secondary refuses the new volume UUID", procs=[prim.proc, sec.proc])
    H.log(f"refused: {st['last_error']}")
    H.check_eq(sec.status()["applied_seq"], applied, "nothing applied from the new UUID")
    H.check_eq(H.file_hash(sec.store), digest, "the replica is untouched")
    prim.stop()
    prim = start_primary(case, sec, store, bm, force=True)
    st = check_full_resync(case, prim, sec, "new file, same path")
    H.check(st["generation"] != gen, f"a new bitmap file kept the old generation {gen}")
    gen2 = st["generation"]
    H.check_eq(examine_json(bm)["generation"], gen2, "the new file's generation")

    # 2b. Again, the new file at another path (the old one removed too).
    write_random(prim, rng, 50)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    prim.stop()
    os.unlink(bm)
    bm2 = case.path("other.bm")
    H.log(f"deleted {bm}; starting the primary with a new file {bm2}")
    prim = start_primary(case, sec, store, bm2, force=True)
    st = check_full_resync(case, prim, sec, "new file, other path")
    H.check(st["generation"] not in (gen, gen2), "a new bitmap file kept an old generation")

    # 3. A clean stop in the middle of that full sync: the chunks not yet copied stay flagged
    # in the file (state clean), and the restart copies at least those, never silently none.
    prim.stop()
    os.unlink(bm2)
    bm3 = case.path("third.bm")
    H.log(f"deleted {bm2}; new file {bm3}, full sync limited to 8 MiB/s, stopped midway")
    prim = case.primary(sec.port, volume="hist", store=store, size="64M",
                        bitmap=f"{bm3},{CHUNK},1",
                        extra=["--resync-rate=8M", "--force-full-resync"])
    st = H.wait_for(lambda: (lambda s: s if s["resync_done_bytes"] >= 4 * H.MiB else None)(
        prim.status()), 30, "the rate-limited full sync to copy 4 MiB", procs=[prim.proc, sec.proc])
    H.check_eq(st["resync_total_bytes"], SIZE, "resync_total_bytes of the new file's sync")
    H.check(st["sync_state"] == "resyncing", f"expected resyncing: {st}")
    prim.stop()
    doc = examine_json(bm3)
    H.check_eq(doc["state"], "clean", "state after SIGTERM mid full sync")
    left = doc["dirty_chunks"]
    H.check(0 < left < SIZE // CHUNK + 1,
            f"a full sync stopped midway must leave its uncopied chunks flagged: {doc}")
    prim = case.primary(sec.port, volume="hist", store=store, size="64M",
                        bitmap=f"{bm3},{CHUNK},1")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check(st["resynced_bytes_total"] >= left * CHUNK,
            f"restart after a full sync stopped midway resynced {st['resynced_bytes_total']} "
            f"bytes, fewer than the {left} chunks still flagged; status {st}")
    H.assert_same_files(store, sec.store)

    prim.stop()
    sec.stop()
    H.assert_same_files(store, sec.store)
    doc = examine_json(bm3)
    H.check_eq((doc["state"], doc["dirty_chunks"]), ("clean", 0), "final examine")


if __name__ == "__main__":
    H.main(body, default_seed=2718)
