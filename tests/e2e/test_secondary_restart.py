#!/usr/bin/python3
"""Losing the secondary mid-load: the primary keeps serving, and on return resyncs exactly the
chunks written meanwhile.

Part 1: 256 MiB volume, 64 KiB chunks, --assume-clean. A random-write load runs (over the first
64 MiB, so the resync stays short); the secondary is killed with SIGKILL mid-load; the load keeps
completing writes (the primary must keep serving); the load stops; `dirty_chunks` is read once
it is stable; the secondary restarts on the same store and port; after in_sync the resync must
have moved exactly dirty_chunks x chunk_size bytes (resynced_bytes_total delta) and the stores
must be equal.

Part 2: the same with the replication link cut (a WAN proxy killed, then restored) instead of a
killed secondary.

Part 3: the same with the secondary stopped by SIGTERM mid-load: it must exit 0 while a primary
streams batches at it (its streams are cancelled, each on its way out before the polling queue
closes) and resync exactly as after a kill.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 256 * H.MiB
CHUNK = 64 * H.KiB
SPAN = 64 * H.MiB


def wait_stable_dirty(prim):
    """dirty_chunks once two reads 0.3 s apart agree and nothing is in flight."""
    def stable():
        a = prim.status()
        time.sleep(0.3)
        b = prim.status()
        if (a["dirty_chunks"] == b["dirty_chunks"] and b["inflight_writes"] == 0
                and b["connection"] != "connected"):
            return b
        return None
    st = H.wait_for(stable, 20, "dirty_chunks to be stable while disconnected", procs=[prim.proc])
    H.log(f"while disconnected: {H.brief(st)}")
    return st


def run_part(case, label, break_link, heal_link, prim, sec):
    st0 = H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.check_eq(st0["chunk_size"], CHUNK, "chunk_size")
    load = H.Load(case, prim.uri, SIZE, case.seed + len(label), qd=16, min_bs=4 * H.KiB,
                  max_bs=64 * H.KiB, span=SPAN)
    load.wait_progress(300, procs=[prim.proc, sec.proc])
    H.log(f"{label}: breaking the link mid-load")
    break_link()
    H.wait_for(lambda: prim.status()["connection"] != "connected", 15,
               "the primary to notice the lost secondary", procs=[prim.proc, load.proc])
    # The primary must keep serving writes while the secondary is away.
    load.wait_progress(500, timeout=20, procs=[prim.proc])
    load.stop()
    st = wait_stable_dirty(prim)
    dirty = st["dirty_chunks"]
    H.check(dirty > 0, f"{label}: no dirty chunks after writing while disconnected")
    H.check(st["sync_state"] != "in_sync", f"{label}: in_sync while disconnected: {st}")
    before = st["resynced_bytes_total"]
    H.log(f"{label}: {dirty} dirty chunks = {dirty * CHUNK} bytes to resync; "
          f"resynced_bytes_total before = {before}")
    heal_link()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    delta = st["resynced_bytes_total"] - before
    H.log(f"{label}: resync moved {delta} bytes ({delta / CHUNK:.1f} chunks)")
    H.check(delta == dirty * CHUNK,
            f"{label}: resync moved {delta} bytes, expected dirty_chunks x chunk_size = "
            f"{dirty} x {CHUNK} = {dirty * CHUNK}; status {H.brief(st)}")
    H.assert_same_files(prim.store, sec.store)


def start_pair(case, volume, wan_ms=None):
    """A secondary and a primary replicating to it (through a WAN proxy if wan_ms is set)."""
    sec = case.secondary(volume=volume, size=SIZE)
    wan = H.Wan(wan_ms, sec.port) if wan_ms is not None else None
    prim = case.primary(wan.port if wan else sec.port, volume=volume, size=SIZE,
                        bitmap="memory,65536,5", assume_clean=True)
    return prim, sec, wan


def stop_pair(prim, sec):
    prim.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)


def body(case):
    H.require_nbd_module()
    # Part 1: kill -9 the secondary, restart it.
    prim, sec, _ = start_pair(case, "rs")
    run_part(case, "kill -9 secondary", sec.kill9, lambda: sec.restart(), prim, sec)
    stop_pair(prim, sec)

    # Part 2: cut the link (WAN proxy, 1 ms each way), restore it.
    prim, sec, wan = start_pair(case, "cut", wan_ms=1)
    run_part(case, "link cut", wan.cut, wan.restore, prim, sec)
    stop_pair(prim, sec)

    # Part 3: stop the secondary cleanly (SIGTERM, exit 0 checked) mid-load, restart it.
    prim, sec, _ = start_pair(case, "term")
    run_part(case, "SIGTERM secondary", sec.stop, lambda: sec.restart(), prim, sec)
    stop_pair(prim, sec)


if __name__ == "__main__":
    H.main(body, default_seed=31337)
