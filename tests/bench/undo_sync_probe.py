#!/usr/bin/python3
"""What the undo log's I/O costs per resync batch, outside the agent.

Since round 11 the secondary's undo log (secondary/undo_log.cc) writes each resync batch's old
contents as O_DIRECT segments of up to 2 MiB and then fdatasyncs the log once per batch (4 MiB of
resync chunks). This writes 40 MiB that way, twice per round: to a new file (what a resync does
today: the log is truncated when a resync ends) and over the blocks of the previous pass (what a
log that kept its blocks between resyncs would do), and prints the time of the writes and of the
fdatasyncs. docs/PERFORMANCE.md, round 11, quotes it. Not a test: it only prints.

  tests/bench/undo_sync_probe.py [ROUNDS (default 3)] [DIR (default /var/tmp)]
"""
import mmap
import os
import sys
import time

SEGMENT = 2 << 20
SEGMENTS = 20          # 40 MiB, about a 1% resync of 4 GiB
PER_FDATASYNC = 2      # one 4 MiB batch


def one_pass(path, fresh, buf):
    if fresh and os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    writes = syncs = 0.0
    try:
        for i in range(SEGMENTS):
            t = time.monotonic()
            os.pwrite(fd, buf, i * SEGMENT)
            writes += time.monotonic() - t
            if i % PER_FDATASYNC == PER_FDATASYNC - 1:
                t = time.monotonic()
                os.fdatasync(fd)
                syncs += time.monotonic() - t
    finally:
        os.close(fd)
    return writes, syncs


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    directory = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp"
    buf = mmap.mmap(-1, SEGMENT)  # page-aligned, as O_DIRECT needs
    buf.write(os.urandom(SEGMENT))
    path = os.path.join(directory, f"undo-sync-probe-{os.getpid()}.bin")
    batches = SEGMENTS // PER_FDATASYNC
    try:
        for _ in range(rounds):
            for fresh, what in ((True, "appending to a new file"), (False, "over written blocks")):
                writes, syncs = one_pass(path, fresh, buf)
                print(f"  {what:24} O_DIRECT writes {writes * 1000:4.0f} ms, fdatasyncs "
                      f"{syncs * 1000:4.0f} ms: {(writes + syncs) * 1000 / batches:.1f} ms per 4 MiB")
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
