#!/usr/bin/python3
"""--compress: per-op payload compression on the stream, raw when it does not pay.

1. A pair with --compress=zstd: 4 MiB of compressible data (text) written through NBD moves
   fewer than a third of its bytes on the stream (compression_output_bytes_total grows by less
   than 1/3 of compression_input_bytes_total); 4 MiB of random data travels raw (output grows
   by exactly as much as input); stores equal; status says "zstd:1".
2. A pair with --compress=lz4: the secondary stops, 8 MiB of compressible data is written, the
   secondary restarts: the resync is compressed too (ratio > 2), and stores compare equal.
3. --compress=gzip and zstd:42 are refused with exit 2.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB


def text(n, rng):
    words = [b"block", b"replication", b"bitmap", b"resync", b"secondary", b"primary", b"chunk"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" " + str(rng.randrange(1000)).encode() + b"\n"
    return bytes(out[:n])


def write(uri, payloads):
    h = H.nbd_connect(uri)
    for offset, data in payloads:
        h.pwrite(data, offset)
    h.flush()
    h.shutdown()


def counters(agent):
    st = agent.status()
    return st["compression_input_bytes_total"], st["compression_output_bytes_total"]


def body(case):
    rng = random.Random(case.seed)
    prim, sec = case.pair(size="64M", volume="z", extra=["--compress=zstd"])
    H.wait_in_sync(prim, secondary=sec)
    H.check_eq(prim.status()["compression"], "zstd:1", "status names the codec")

    in0, out0 = counters(prim)
    write(prim.uri, [(i * 64 * H.KiB, text(64 * H.KiB, rng)) for i in range(64)])
    H.wait_in_sync(prim, secondary=sec)
    in1, out1 = counters(prim)
    H.log(f"compressible: {in1 - in0} bytes in, {out1 - out0} on the stream")
    H.check_eq(in1 - in0, 4 * H.MiB, "compressible bytes counted")
    H.check(out1 - out0 < (in1 - in0) / 3, "compressible data shrinks at least 3x")

    write(prim.uri, [(8 * H.MiB + i * 64 * H.KiB, rng.randbytes(64 * H.KiB)) for i in range(64)])
    H.wait_in_sync(prim, secondary=sec)
    in2, out2 = counters(prim)
    H.log(f"random: {in2 - in1} bytes in, {out2 - out1} on the stream")
    H.check_eq(out2 - out1, in2 - in1, "incompressible data travels raw")
    H.assert_same_files(prim.store, sec.store)
    prim.stop()
    sec.stop()

    prim, sec = case.pair(size="64M", volume="l", extra=["--compress=lz4"])
    H.wait_in_sync(prim, secondary=sec)
    sec.stop()
    write(prim.uri, [(16 * H.MiB + i * 64 * H.KiB, text(64 * H.KiB, rng)) for i in range(128)])
    in0, out0 = counters(prim)
    sec.start()
    st = H.wait_in_sync(prim, secondary=sec)
    in1, out1 = counters(prim)
    H.log(f"lz4 resync: {in1 - in0} bytes in, {out1 - out0} on the stream")
    H.check(in1 - in0 >= 8 * H.MiB, "the resync went through the compressor")
    H.check((in1 - in0) / max(1, out1 - out0) > 2, "the resync is compressed")
    H.assert_same_files(prim.store, sec.store)

    for bad in ("gzip", "zstd:42"):
        r = H.run([H.BIN / "repl-primary", "--volume=x", f"--store={case.path('x.img')}",
                   "--size=1M", "--secondary=127.0.0.1:1", "--nbd-listen=127.0.0.1:1",
                   f"--admin-socket={case.path('x.sock')}", f"--compress={bad}"], check_rc=False)
        H.check(r.returncode == 2 and "--compress" in r.stderr,
                f"--compress={bad}: exit {r.returncode} {r.stderr!r}")


if __name__ == "__main__":
    H.main(body)
