#!/usr/bin/python3
"""Dead-peer detection within --peer-timeout, with clients served throughout.

A pair (32 MiB, primary --peer-timeout=3, --async=64) syncs. The secondary is frozen (SIGSTOP:
its TCP connection stays open, nothing answers) while a writer keeps writing distinct chunks
through NBD:
- the primary declares the secondary dead no later than 3 s + 3 s slack after the freeze
  (connection no longer "connected", last_error set) — without --peer-timeout a frozen peer with
  an open socket would hold the window full for ever;
- NBD writes keep completing all the while: after the detection, a further 100 writes complete
  within 10 s (they are only marked in the bitmap);
- the secondary is thawed (SIGCONT): the primary reconnects, resyncs the marked chunks, and the
  stores compare equal.
"""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 32 * H.MiB
CHUNK = 64 * H.KiB


def body(case):
    rng = random.Random(case.seed)
    prim, sec = case.pair(size="32M", volume="pt", async_n=64, extra=["--peer-timeout=3"])
    H.wait_in_sync(prim, secondary=sec)
    h = H.nbd_connect(prim.uri)
    chunks = list(range(SIZE // CHUNK))
    rng.shuffle(chunks)

    sec.proc.popen.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    H.log("secondary frozen (SIGSTOP)")
    written = 0
    detected_at = None
    while time.monotonic() - frozen_at < 12:
        h.pwrite(rng.randbytes(4096), chunks[written % len(chunks)] * CHUNK)
        written += 1
        if written % 20 == 0:
            st = prim.status()
            if st["connection"] != "connected":
                detected_at = time.monotonic()
                H.log(f"declared dead after {detected_at - frozen_at:.1f} s ({written} writes "
                      f"meanwhile): {st['connection']}, last_error {st['last_error']!r}")
                break
    H.check(detected_at is not None and detected_at - frozen_at <= 6,
            f"the frozen secondary must be declared dead within 3 s + 3 s slack "
            f"(writes so far {written})")
    H.check(prim.status()["last_error"] != "", "last_error says why")
    t0 = time.monotonic()
    for i in range(100):
        h.pwrite(rng.randbytes(4096), chunks[(written + i) % len(chunks)] * CHUNK)
    h.flush()
    H.check(time.monotonic() - t0 < 10, "writes keep completing while the secondary is dead")
    H.check(prim.status()["dirty_chunks"] > 0, "the writes are marked for resync")
    h.shutdown()

    sec.proc.popen.send_signal(signal.SIGCONT)
    H.log("secondary thawed (SIGCONT)")
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.assert_same_files(prim.store, sec.store)


if __name__ == "__main__":
    H.main(body)
