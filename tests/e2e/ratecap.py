#!/usr/bin/python3
"""ratecap.py RATE: copy stdin to stdout at no more than RATE bytes per second (e.g. "2m").

The WAN helper's bandwidth cap. It is a token bucket whose burst is one 64 KiB read, so an idle
link earns no credit. `pv -L` (the TOOLING.md recipe) banks up to 5 s of its rate while idle and
then lets that much through at once: a test that waits a few seconds for in_sync before writing
8 MiB through a "2 MiB/s" link saw every byte arrive in a burst, and no congestion at all.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import parse_size  # noqa: E402  (pv's syntax: K/M/G suffixes, powers of 1024)

CHUNK = 64 * 1024


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ratecap.py RATE (bytes per second, k/m/g suffixes)")
    rate = parse_size(sys.argv[1])
    if rate <= 0:
        sys.exit(f"ratecap.py: the rate must be positive: {sys.argv[1]!r}")
    tokens, last = 0.0, time.monotonic()
    while True:
        data = os.read(0, CHUNK)
        if not data:
            return
        now = time.monotonic()
        # Credit since the last read, capped at one chunk: idle time is not banked.
        tokens = min(float(CHUNK), tokens + (now - last) * rate) - len(data)
        last = now
        if tokens < 0:
            # The sleep's credit is counted at the next read (from `last`), bringing tokens back
            # to about zero.
            time.sleep(-tokens / rate)
        write_all(1, data)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
