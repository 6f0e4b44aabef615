#!/usr/bin/python3
"""Random writes of many sizes with many in flight, then nbdcopy and qemu-io writes.

1. libnbd aio_pwrite: 512 B .. 1 MiB (multiples of 512, log-uniform), random 512-aligned
   offsets (overlaps included), up to 64 in flight; flush. The pair must reach in_sync and the
   stores must be equal byte for byte.
2. nbdcopy a random 64 MiB file to the start of the export; qemu-io writes past it.
   in_sync again; stores equal; the primary's first 64 MiB equal the source file.
3. The secondary stops, qemu-io writes to the primary alone, the secondary comes back: the
   resync of the flagged chunks leaves the stores equal.

The secondary runs with --store-io=direct (O_DIRECT through io_uring, where the file system
allows it): its aligned writes bypass the page cache and run several at once, the unaligned
ones (step 1 has many) go through the page cache in between; every other test covers the
default, buffered.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 256 * H.MiB
WRITES = 1500
QD = 64


def random_writes(case, prim):
    nbd = H.require_nbd_module()
    rng = random.Random(case.seed)
    pool = rng.randbytes(2 * H.MiB)
    h = H.nbd_connect(prim.uri)
    check_size = h.get_size()
    H.check_eq(check_size, SIZE, "export size")
    errors = []
    completed = 0
    total = 0
    max_seen = 0

    def done(err):
        nonlocal completed
        completed += 1
        if err.value:
            errors.append(err.value)
        return 1

    issued = 0
    while issued < WRITES or h.aio_in_flight() > 0:
        while issued < WRITES and h.aio_in_flight() < QD:
            # log-uniform size in [512 B, 1 MiB], multiple of 512
            n = max(512, int(2 ** rng.uniform(9, 20)) // 512 * 512)
            off = rng.randrange(0, (SIZE - n) // 512 + 1) * 512
            o = rng.randrange(0, H.MiB)
            h.aio_pwrite(nbd.Buffer.from_bytearray(pool[o:o + n]), off, completion=done)
            issued += 1
            total += n
        max_seen = max(max_seen, h.aio_in_flight())
        h.poll(-1)
    H.check(not errors, f"write errors from the primary: {errors[:10]}")
    h.flush()
    h.shutdown()
    H.log(f"random writes: {completed} writes, {total / H.MiB:.1f} MiB, "
          f"max {max_seen} in flight")


def body(case):
    H.require_nbd_module()
    H.require_tools("nbdcopy", "qemu-io")
    direct = H.supports_o_direct(case.dir)
    prim, sec = case.pair(size=SIZE, volume="rand", assume_clean=True,
                          secondary_extra=["--store-io=direct"] if direct else [])
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    if direct:
        H.check_eq(sec.status()["store_io"], "direct", "the secondary's store_io")
    else:
        H.log("no O_DIRECT in the test directory: the secondary writes through the page cache")

    random_writes(case, prim)
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check(st["replicated_writes_total"] >= WRITES,
            f"replicated_writes_total {st['replicated_writes_total']} < {WRITES} writes")
    H.assert_same_files(prim.store, sec.store)

    src = case.path("src64.img")
    H.fill_random(src, 64 * H.MiB, case.seed + 1)
    H.run(["nbdcopy", "--flush", src, prim.uri], timeout=60)
    H.run(["qemu-io", "-f", "raw",
           "-c", "write -P 0x5a 65M 1M",
           "-c", "write -P 0xa5 70000K 4K",
           "-c", "write -P 0x11 100M 3M",
           "-c", "aio_write -P 0x22 120M 64K",
           "-c", "aio_write -P 0x33 121M 512",
           "-c", "aio_flush",
           "-c", "flush",
           prim.uri], timeout=60)
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    with open(src, "rb") as f:
        H.check(f.read() == H.pread(prim.store, 0, 64 * H.MiB),
                "the primary's first 64 MiB differ from the file nbdcopy wrote")
    H.check(H.pread(prim.store, 100 * H.MiB, 3 * H.MiB) == b"\x11" * (3 * H.MiB),
            "qemu-io pattern 0x11 at 100M not on the primary")
    H.check(H.pread(sec.store, 121 * H.MiB, 512) == b"\x33" * 512,
            "qemu-io pattern 0x33 at 121M not on the secondary")

    if direct:
        H.check(sec.status()["direct_writes_total"] > 0, "no direct writes on the secondary")

    # The secondary away: the primary flags what it writes alone, and resyncs just that.
    sec.stop()
    H.run(["qemu-io", "-f", "raw",
           "-c", "write -P 0x44 10M 2M",
           "-c", "write -P 0x55 150M 4K",
           "-c", "write -P 0x66 200M 1536",
           "-c", "flush",
           prim.uri], timeout=60)
    sec.start()
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.assert_same_files(prim.store, sec.store)

    prim.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)


if __name__ == "__main__":
    H.main(body, default_seed=20240501)
