#!/usr/bin/python3
"""How fast appending undo-log records to a new file is, outside the agent.

The secondary's undo log (secondary/undo_log.cc) appends, per resync chunk, a 24-byte header and
the chunk's 64 KiB of old data: 65,560-byte records, so every record after the first starts 24
bytes further off a page boundary. In a real 10% resync `perf` put 0.95 s of the apply thread's
CPU in those appends (docs/PERFORMANCE.md, round 10). This writes the same volume (6,400 records,
~400 MiB) of records to a new file in /tmp, with and without the misalignment, and prints the
time of each, alternating. Not a test: it only prints.

  tests/bench/undo_append_probe.py [ROUNDS (default 2)]
"""
import mmap
import os
import sys
import time

RECORDS = 6400


def one_run(record_bytes, source_offset):
    buf = mmap.mmap(-1, record_bytes + 4096)
    buf.write(os.urandom(record_bytes + 4096))
    record = memoryview(buf)[source_offset:source_offset + record_bytes]
    path = f"/tmp/undo-append-probe-{os.getpid()}.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.monotonic()
        for i in range(RECORDS):
            os.pwrite(fd, record, i * record_bytes)
        return time.monotonic() - t0
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    for _ in range(rounds):
        for record_bytes, source_offset, what in ((65536, 0, "64 KiB, page-aligned"),
                                                  (65560, 0, "65,560 B records (the undo log's)"),
                                                  (65560, 24, "the same, source off by 24 B")):
            seconds = one_run(record_bytes, source_offset)
            print(f"  {what:36} {RECORDS * record_bytes / 2**20:.0f} MiB in {seconds:.3f} s")


if __name__ == "__main__":
    main()
