#!/usr/bin/python3
"""--bitmap-set-ahead: a new bit's flush sets its whole aligned group, a disconnect still resyncs
only the chunks written, a crash resyncs the groups.

A pair (64 MiB, --bitmap=F,65536,1 --bitmap-set-ahead=1M: groups of 16 chunks) does its initial
sync and its bitmap empties.

1. The secondary is frozen (SIGSTOP: no acks). A 4 KiB write into chunk 5 sets the bits of chunks
   0-15 on disk (`replctl bitmap examine` and the file's bits) while dirty_chunks is 1. A write
   into chunk 6 then costs no bitmap flush (bitmap_flushes_total unchanged).
2. The frozen secondary is killed; chunk 40 (group 32-47) is written while it is down. It
   restarts: the resync moves exactly chunks 5, 6 and 40 (3 x 64 KiB), not their groups. Stores
   equal.
3. Once the bitmap is empty again, the secondary is frozen, chunk 100 (group 96-111) is written
   and the primary is killed (SIGKILL). It restarts on the same file: every set bit may differ
   after a crash, so the resync moves the whole group, 16 chunks. Stores equal.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
GROUP = 16                 # --bitmap-set-ahead=1M over 64 KiB chunks


def write_chunk(prim, chunk, seed):
    h = H.nbd_connect(prim.uri)
    try:
        h.pwrite(bytes([seed % 251 + 1]) * 4096, chunk * CHUNK + 8192)
    finally:
        h.shutdown()


def body(case):
    bm = case.path("vol.bm")
    sec = case.secondary(volume="ahead", size="64M")
    prim = case.primary(sec.port, volume="ahead", size="64M", bitmap=f"{bm},{CHUNK},1",
                        extra=["--bitmap-set-ahead=1M"])
    st = H.wait_clean_bitmap(prim, sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "initial full sync bytes")

    # 1: one write sets its group; a neighbour's write then flushes nothing.
    sec.freeze()
    try:
        write_chunk(prim, 5, 1)
        st = prim.status()
        H.check_eq(st["dirty_chunks"], 1, "1: dirty chunks after one write")
        H.check_eq(st["bitmap_bits_set"], GROUP, "1: bits set after one write (its group)")
        H.check_eq(H.bitmap_file_bits(bm, NCHUNKS), set(range(GROUP)), "1: bits in the file")
        flushes = st["bitmap_flushes_total"]
        write_chunk(prim, 6, 2)
        st = prim.status()
        H.check_eq(st["bitmap_flushes_total"], flushes, "1: flushes after a write set ahead")
        H.check_eq(st["dirty_chunks"], 2, "1: dirty chunks after the neighbour's write")
        # 2: a disconnect resyncs the chunks written, not their groups.
        sec.kill9()
    finally:
        sec.thaw()
    write_chunk(prim, 40, 3)
    H.wait_for(lambda: prim.status()["dirty_chunks"] == 3, 15,
               "2: dirty_chunks == 3 while the secondary is down", procs=[prim.proc])
    H.check_eq(prim.status()["bitmap_bits_set"], 2 * GROUP, "2: bits set (two groups)")
    sec.restart()
    H.check_resync(prim, sec, 3, CHUNK, SIZE, st["resynced_bytes_total"], "2 (disconnect)")

    # 3: a crash resyncs every set bit: the whole group.
    H.wait_clean_bitmap(prim, sec)
    sec.freeze()
    try:
        write_chunk(prim, 100, 4)
        H.check_eq(H.bitmap_file_bits(bm, NCHUNKS), set(range(96, 96 + GROUP)),
                   "3: bits in the file")
        prim.kill9()
    finally:
        sec.thaw()
    prim.restart()
    # A restarted primary counts resynced bytes from 0.
    H.check_resync(prim, sec, GROUP, CHUNK, SIZE, 0, "3 (primary kill -9)")
    prim.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)


if __name__ == "__main__":
    H.main(body, default_seed=1616)
