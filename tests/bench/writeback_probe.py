#!/usr/bin/python3
"""What a 1% resync leaves the replica's final fdatasync, and whether starting writeback early helps.

Writes 655 scattered 64 KiB chunks (1% of a 4 GiB file, as resync.py dirties) into a new sparse
file in offset order, the way the secondary applies a resync, then times fdatasync. `plain` only
writes; `sfr` also calls sync_file_range(SYNC_FILE_RANGE_WRITE) after each chunk, which starts
the chunk's writeback at once (docs/PERFORMANCE.md: round 9 measured it here; round 10 built it
into the secondary, found no gain in a real resync, and reverted it).

  tests/bench/writeback_probe.py [DIR (default /tmp)] [ROUNDS (default 2)]

Prints the time of the writes, of the fdatasync and in all, for each mode, alternating. Not a
test: it only prints.
"""
import ctypes
import os
import random
import sys
import time

SIZE = 4 << 30
CHUNK = 64 << 10
CHUNKS = 655
SYNC_FILE_RANGE_WRITE = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def one_run(path, offsets, data, start_writeback):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, SIZE)
        os.fsync(fd)
        t0 = time.monotonic()
        for offset in offsets:
            os.pwrite(fd, data, offset)
            if start_writeback and _libc.sync_file_range(fd, offset, CHUNK,
                                                          SYNC_FILE_RANGE_WRITE) != 0:
                raise OSError(ctypes.get_errno(), "sync_file_range")
        t1 = time.monotonic()
        os.fdatasync(fd)
        t2 = time.monotonic()
        return t1 - t0, t2 - t1
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    path = os.path.join(directory, f"writeback-probe-{os.getpid()}.img")
    rng = random.Random(1)
    offsets = sorted(i * CHUNK for i in rng.sample(range(SIZE // CHUNK), CHUNKS))
    data = os.urandom(CHUNK)
    print(f"{CHUNKS} x 64 KiB scattered over {SIZE >> 30} GiB in {directory}")
    for _ in range(rounds):
        for mode in ("plain", "sfr"):
            writes, flush = one_run(path, offsets, data, mode == "sfr")
            print(f"  {mode:5}  writes {writes:.3f} s  fdatasync {flush:.3f} s  "
                  f"total {writes + flush:.3f} s")


if __name__ == "__main__":
    main()
