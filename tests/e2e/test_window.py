#!/usr/bin/python3
"""The in-flight window is reached but never exceeded; --sync acknowledges only replicated data.

Part 1 (async): `--async=8 --max-inflight-bytes=256K`, the replication link through a WAN proxy
adding 20 ms each way, so the window fills. A load of random 4 KiB..64 KiB writes at queue
depth 64 runs while status is polled: inflight_writes <= 8 and inflight_bytes <= 256 KiB at
every poll; at the end peak_inflight_writes == 8 and peak_inflight_bytes <= 256 KiB. Stores
equal after in_sync.

Part 2 (sync): `--sync` through a 5 ms proxy. After each synchronous write (some with FUA)
returns, the secondary's store file already holds the data (read directly from the file).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
MAX_W = 8
MAX_B = 256 * H.KiB


def part_async(case):
    sec = case.secondary(volume="win", size=SIZE)
    wan = H.Wan(20, sec.port)
    prim = case.primary(wan.port, volume="win", size=SIZE, async_n=MAX_W,
                        max_inflight_bytes="256K", assume_clean=True)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    st = prim.status()
    H.check_eq(st["max_inflight_writes"], MAX_W, "max_inflight_writes")
    H.check_eq(st["max_inflight_bytes"], MAX_B, "max_inflight_bytes")
    H.check_eq(st["mode"], "async", "mode")

    # 4..64 KiB: eight writes usually fit in 256 KiB (the count binds), sometimes not (the
    # byte limit binds).
    load = H.Load(case, prim.uri, SIZE, case.seed, qd=64, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB)
    polls = 0
    full_seen = 0
    violations = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        H.check(load.proc.alive(), f"load generator died: {load.proc.tail(10)}")
        st = prim.status()
        polls += 1
        w, b = st["inflight_writes"], st["inflight_bytes"]
        if w > MAX_W or b > MAX_B:
            violations.append((round(time.monotonic() - H.T0, 2), w, b))
        if w == MAX_W or b > MAX_B - 64 * H.KiB:
            full_seen += 1
    done = load.stop()
    H.log(f"{polls} status polls during load, window (nearly) full in {full_seen}, "
          f"{done} writes")
    H.check(not violations, f"window exceeded (time, inflight_writes, inflight_bytes): "
            f"{violations[:10]}")
    H.check(done > 100, f"only {done} writes completed under load")
    st = H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.log(f"peaks: writes {st['peak_inflight_writes']}, bytes {st['peak_inflight_bytes']}")
    H.check_eq(st["peak_inflight_writes"], MAX_W, "peak_inflight_writes (window reached)")
    H.check(0 < st["peak_inflight_bytes"] <= MAX_B,
            f"peak_inflight_bytes {st['peak_inflight_bytes']} not in (0, {MAX_B}]")
    H.check(full_seen > 0, "no status poll saw the window full although the link has 40 ms RTT")
    H.assert_same_files(prim.store, sec.store)
    prim.stop()
    sec.stop()
    wan.proc.stop()
    H.assert_same_files(prim.store, sec.store)


def part_sync(case):
    nbd = H.require_nbd_module()
    sec = case.secondary(volume="syn", size=SIZE)
    wan = H.Wan(5, sec.port)
    prim = case.primary(wan.port, volume="syn", size=SIZE, sync=True, assume_clean=True)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.check_eq(prim.status()["mode"], "sync", "mode")
    rng = random.Random(case.seed + 1)
    h = H.nbd_connect(prim.uri)
    t0 = time.monotonic()
    n_writes = 60
    for i in range(n_writes):
        n = rng.choice([512, 4096, 65536, 200 * 1024, H.MiB])
        off = rng.randrange(0, (SIZE - n) // 512 + 1) * 512
        data = rng.randbytes(n)
        flags = nbd.CMD_FLAG_FUA if i % 3 == 0 else 0
        h.pwrite(data, off, flags=flags)
        got = H.pread(sec.store, off, n)
        if got != data:
            raise H.Fail(f"sync write #{i} ({n} bytes at {off}, flags {flags}) returned but "
                         f"the secondary's store does not hold it yet; status: "
                         f"{H.brief(prim.status())}")
    elapsed = time.monotonic() - t0
    h.flush()
    h.shutdown()
    H.log(f"{n_writes} sync writes, each on the secondary when it returned "
          f"({elapsed / n_writes * 1000:.1f} ms each with a 10 ms RTT link)")
    H.check(elapsed / n_writes >= 0.009,
            f"sync writes took {elapsed / n_writes * 1000:.1f} ms each: less than one 10 ms"
            f" round trip, so they cannot have waited for the secondary")
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    prim.stop()
    sec.stop()
    wan.proc.stop()


def body(case):
    H.require_nbd_module()
    part_async(case)
    part_sync(case)


if __name__ == "__main__":
    H.main(body, default_seed=808)
