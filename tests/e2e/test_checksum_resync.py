#!/usr/bin/python3
"""Checksum-based resync (--resync-mode=checksum): when no bitmap can be trusted, the primary
compares chunk checksums with the secondary and sends only the chunks that differ.

Part 1, a new secondary holding an old copy: the primary's store is random data; the secondary's
store is a copy of it in which 37 chunks are then changed on the primary side and 1 on the
secondary side. Neither side has replication history, so without checksums this is a full
sync of all 1024 chunks. With --resync-mode=checksum exactly the 38 differing chunks must be
sent (resynced_chunks_total), the other 986 counted as matched, and the stores must be equal.

Part 2, a lost bitmap file under load: the primary stops, its bitmap file is deleted and 5
chunks of its store change offline (what a lost bitmap cannot tell). It restarts with
--force-full-resync (a new bitmap file is a new volume UUID, which the secondary accepts only with
the operator's consent) while a client writes; only the 5 changed chunks (and at most the chunks the
client writes into meanwhile) may be sent; the stores must be equal.
"""
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
CHUNKS = SIZE // CHUNK


def scribble(path, chunks, rng):
    """Changes 4 KiB at a random offset inside each chunk of `chunks`."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for c in chunks:
            os.pwrite(fd, rng.randbytes(4096), c * CHUNK + rng.randrange(0, CHUNK - 4096, 512))
    finally:
        os.close(fd)


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    prim_store, sec_store = case.path("primary.img"), case.path("secondary.img")
    H.fill_random(prim_store, SIZE, case.seed)
    shutil.copyfile(prim_store, sec_store)
    changed = sorted(rng.sample(range(CHUNKS), 38))
    scribble(prim_store, changed[:37], rng)
    scribble(sec_store, changed[37:], rng)

    H.log("part 1: a secondary holding an old copy, no history on either side")
    sec = case.secondary(volume="ck", store=sec_store)
    prim = case.primary(sec.port, volume="ck", store=prim_store,
                        bitmap=f"{case.path('primary.bitmap')},65536,1",
                        extra=["--resync-mode=checksum"])
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.log(f"part 1: {H.brief(st)}; matched {st['resync_checksum_matched_chunks_total']} chunks")
    H.check_eq(st["resync_mode"], "checksum", "resync_mode")
    H.check_eq(st["resynced_chunks_total"], 38, "chunks sent (the 38 that differ)")
    H.check_eq(st["resync_checksum_matched_chunks_total"], CHUNKS - 38,
               "chunks found equal and not sent")
    H.check_eq(st["resync_checksum_matched_bytes_total"], (CHUNKS - 38) * CHUNK,
               "bytes found equal and not sent")
    H.check(sec.status()["consistent"], "secondary consistent after the checksum resync")
    H.assert_same_files(prim_store, sec_store)

    H.log("part 2: the primary's bitmap file is lost and its store changed offline")
    prim.stop()
    os.unlink(case.path("primary.bitmap"))
    offline = sorted(rng.sample(range(64, CHUNKS), 5))  # away from the client's span below
    scribble(prim_store, offline, rng)
    # A new bitmap file is a new volume UUID: the secondary refuses it unless the operator
    # consents to overwriting the replica (--force-full-resync). With checksums that "full"
    # resync still sends only what differs.
    prim.argv.append("--force-full-resync")
    prim.restart()
    load = H.Load(case, prim.uri, SIZE, case.seed + 1, qd=4, span=4 * H.MiB)
    load.wait_progress(200, procs=[prim.proc, sec.proc])
    # Let the client write while the comparison and the resync run, then settle.
    load.wait_progress(400, procs=[prim.proc, sec.proc])
    load.stop()
    st = H.wait_in_sync(prim, timeout=30, secondary=sec)
    sent = st["resynced_chunks_total"]
    H.log(f"part 2: {H.brief(st)}; sent {sent}, matched "
          f"{st['resync_checksum_matched_chunks_total']}")
    # The client writes into the first 64 chunks; a chunk it changed between the two sides'
    # checksums and the comparison may be sent too. Everything else must have matched.
    H.check(5 <= sent <= 5 + 64, f"part 2 sent {sent} chunks: expected the 5 changed offline "
            f"(plus at most the 64 the client writes into)")
    H.check(st["resync_checksum_matched_chunks_total"] >= CHUNKS - 5 - 64,
            f"part 2: only {st['resync_checksum_matched_chunks_total']} chunks matched")
    H.check(sec.status()["consistent"], "secondary consistent after part 2")
    H.assert_same_files(prim_store, sec_store)
    prim.stop()
    sec.stop()


if __name__ == "__main__":
    H.main(body)
