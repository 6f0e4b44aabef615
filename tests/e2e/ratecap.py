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

CHUNK = 64 * 1024


def parse_rate(text):
    """pv's syntax: a number with an optional k/m/g suffix, powers of 1024."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    rate = float(number) * scale
    if rate <= 0:
        raise ValueError(f"rate must be positive: {text!r}")
    return rate


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ratecap.py RATE (bytes per second, k/m/g suffixes)")
    rate = parse_rate(sys.argv[1])
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
