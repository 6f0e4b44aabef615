#!/usr/bin/python3
"""FLUSH, FUA, TRIM and WRITE_ZEROES over previously written data, from qemu-io and nbdsh.

The primary exports over a unix socket here (the other tests use TCP). The first 16 MiB are
filled with random data; then qemu-io (every write FUA; write -P, write -z, write -z -u,
discard, flush) and nbdsh (pwrite with FUA, trim, zero with and without NO_HOLE/FUA, flush)
overwrite parts of it. A byte-exact model of the expected image is kept: after in_sync both
stores must equal the model (so trimmed and zeroed ranges read zero on both) and each other.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
K, M = H.KiB, H.MiB


def body(case):
    H.require_nbd_module()
    H.require_tools("qemu-io", "nbdsh")
    prim, sec = case.pair(size=SIZE, volume="ops", nbd="unix", bitmap="memory,65536,5")
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    model = bytearray(SIZE)

    def put(off, data):
        model[off:off + len(data)] = data

    def zero(off, n):
        model[off:off + n] = bytes(n)

    # 1. previously written data: 16 MiB random, through libnbd
    rng = random.Random(case.seed)
    h = H.nbd_connect(prim.uri)
    for what in ("can_flush", "can_fua", "can_trim", "can_zero"):
        H.check(getattr(h, what)(), f"the primary does not advertise {what}")
    for off in range(0, 16 * M, M):
        data = rng.randbytes(M)
        h.pwrite(data, off)
        put(off, data)
    h.flush()
    h.shutdown()

    # 2. qemu-io: every write carries FUA (writethrough); discards are 64K-aligned so that
    #    qemu cannot shrink them to its discard alignment.
    H.run(["qemu-io", "-f", "raw", "-d", "unmap",
           "-c", "write -P 0xab 0 1M",
           "-c", "write -z 1M 512K",
           "-c", "write -z -u 2M 1M",
           "-c", "discard 3M 1M",
           "-c", "write -P 0xcd 4M 4K",
           "-c", "discard 5M 64K",
           "-c", "write -P 0xef 5M 512",
           "-c", "flush",
           prim.uri], timeout=30)
    put(0, b"\xab" * M)
    zero(1 * M, 512 * K)
    zero(2 * M, M)
    zero(3 * M, M)
    put(4 * M, b"\xcd" * (4 * K))
    zero(5 * M, 64 * K)
    put(5 * M, b"\xef" * 512)

    # 3. nbdsh: FUA writes, trims, zeroes (with NO_HOLE and FUA), flush. Unaligned to the
    #    64 KiB chunk on purpose.
    script = f"""
F = nbd.CMD_FLAG_FUA
h.pwrite(b"\\xc1" * 65536, {8 * M}, flags=F)
h.pwrite(b"\\xc2" * 4096, {8 * M + 128 * K + 512}, flags=F)
h.trim({M}, {9 * M})
h.trim({8 * K}, {10 * M + 4 * K})
h.zero({M}, {11 * M})
h.zero({64 * K}, {12 * M}, flags=nbd.CMD_FLAG_NO_HOLE)
h.zero({4 * K}, {12 * M + 200 * K}, flags=F)
h.trim({64 * K}, {13 * M}, flags=F)
h.pwrite(b"\\xc3" * 1536, {13 * M + 1024}, flags=F)
h.flush()
assert h.pread({M}, {9 * M}) == bytes({M}), "trimmed range does not read zero"
assert h.pread(4096, {8 * M + 128 * K + 512}) == b"\\xc2" * 4096
print("nbdsh ops done")
"""
    H.run(["nbdsh", "-u", prim.uri, "-c", script], timeout=30)
    put(8 * M, b"\xc1" * (64 * K))
    put(8 * M + 128 * K + 512, b"\xc2" * 4096)
    zero(9 * M, M)
    zero(10 * M + 4 * K, 8 * K)
    zero(11 * M, M)
    zero(12 * M, 64 * K)
    zero(12 * M + 200 * K, 4 * K)
    zero(13 * M, 64 * K)
    put(13 * M + 1024, b"\xc3" * 1536)

    # FUA in async mode: persistent on the primary's store before the reply.
    H.check(H.pread(prim.store, 8 * M, 64 * K) == b"\xc1" * (64 * K),
            "FUA write not in the primary's store after its reply")

    H.wait_in_sync(prim, timeout=30, secondary=sec)
    for who in (prim, sec):
        with open(who.store, "rb") as f:
            got = f.read()
        if got != bytes(model):
            first = next(i for i in range(SIZE) if got[i] != model[i]) \
                if len(got) == SIZE else None
            raise H.Fail(f"{who.name} store {who.store} differs from the expected image"
                         f" (size {len(got)}), first difference at offset {first}")
        for off, n in ((3 * M, M), (9 * M, M), (10 * M + 4 * K, 8 * K), (13 * M, 1024)):
            H.check(got[off:off + n] == bytes(n), f"{who.name}: trimmed {off}+{n} not zero")
        H.log(f"{who.name} store matches the model")
    H.stop_pair_and_compare(prim, sec)


if __name__ == "__main__":
    H.main(body, default_seed=4242)
