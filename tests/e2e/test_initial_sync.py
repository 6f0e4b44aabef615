#!/usr/bin/python3
"""Initial synchronisation.

A. A fresh pair whose stores hold different random data: the full initial sync moves the whole
   volume (resynced_bytes_total == size) and the stores end equal.
B. A primary restart with its bitmap in memory (--bitmap=memory) triggers a full resync: the
   primary's store is changed while it is down, and after the restart the stores are equal
   again with resynced_bytes_total == size.
C. --assume-clean on two equal files syncs nothing (resynced_bytes_total stays 0, also after
   some writes) and the stores stay equal.
"""
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)

    # A. full initial sync over different content
    pstore, sstore = case.path("a-primary.img"), case.path("a-secondary.img")
    H.fill_random(pstore, SIZE, case.seed)
    H.fill_random(sstore, SIZE, case.seed + 1)
    H.check(H.compare_files(pstore, sstore) is not None, "the initial stores are already equal")
    sec = case.secondary(volume="init", store=sstore, size=SIZE, name="a-secondary")
    prim = case.primary(sec.port, volume="init", store=pstore, size=SIZE, name="a-primary",
                        bitmap="memory")
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "resynced_bytes_total after the initial sync")
    H.check_eq(st["size_bytes"], SIZE, "size_bytes")
    H.assert_same_files(pstore, sstore)

    # B. primary restart -> full resync
    prim.stop()
    data = rng.randbytes(H.MiB)
    with open(pstore, "r+b") as f:  # changed while the primary is down
        f.seek(10 * H.MiB + 4096)
        f.write(data)
    H.check(H.compare_files(pstore, sstore) is not None, "the change did not reach the file")
    prim.restart()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], SIZE,
               "resynced_bytes_total after a primary restart (full resync expected)")
    H.assert_same_files(pstore, sstore)
    prim.stop()
    sec.stop()
    H.assert_same_files(pstore, sstore)

    # C. --assume-clean on equal files
    p2, s2 = case.path("c-primary.img"), case.path("c-secondary.img")
    shutil.copyfile(pstore, p2)
    shutil.copyfile(pstore, s2)
    sec = case.secondary(volume="clean", store=s2, name="c-secondary")
    prim = case.primary(sec.port, volume="clean", store=p2, assume_clean=True,
                        name="c-primary")
    st = H.wait_in_sync(prim, timeout=20, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], 0, "resynced_bytes_total with --assume-clean")
    h = H.nbd_connect(prim.uri)
    for _ in range(20):
        n = rng.choice([4096, 65536, 300 * 1024])
        off = rng.randrange(0, (SIZE - n) // 4096) * 4096
        h.pwrite(rng.randbytes(n), off)
    h.flush()
    h.shutdown()
    st = H.wait_in_sync(prim, timeout=20, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], 0,
               "resynced_bytes_total after writes with --assume-clean")
    H.check(st["replicated_writes_total"] >= 20,
            f"replicated_writes_total {st['replicated_writes_total']} < 20")
    H.assert_same_files(p2, s2)
    prim.stop()
    sec.stop()
    H.assert_same_files(p2, s2)


if __name__ == "__main__":
    H.main(body, default_seed=99)
