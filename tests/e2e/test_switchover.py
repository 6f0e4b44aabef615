#!/usr/bin/python3
"""Planned switchover (`replctl switchover`) under light load loses nothing, in both hostings.

A client keeps writing (4 KiB..64 KiB at random offsets, each write a fresh pattern) and records
every write its server acknowledged. During the switchover its writes wait, then fail (the old
primary stops serving); it reconnects to the NBD address the switchover printed and goes on.

1. A runs repl-primary, B repl-secondary (--nbd-listen, --peer). `replctl switchover` on A: B
   serves the volume; A's volume reports "handed-over" and refuses I/O; repl-primary refuses to
   start on the handed-over bitmap file. A is restarted as `repl-secondary --bitmap` on its store
   and B brings it up to date by bitmap (no full copy).
2. Back again: `replctl switchover` on B (a promoted volume in repl-secondary): B becomes A's
   replica by itself, A serves the volume; the client follows.
After each step the stores are equal byte for byte and hold every acknowledged write.
"""
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
VOLUME = "so"


class Writer:
    """Light load: one write at a time; `acked` maps offset -> data of the last acked write there,
    writes never overlap partially (4 KiB-aligned slots of 64 KiB). `unacked` maps offset -> the
    writes tried there since that one that failed: a failed write may still have landed (its reply
    was lost, or its flush failed), so the slot may hold any of them instead."""

    SLOT = 64 * H.KiB

    def __init__(self, uri, seed):
        self.uri, self.rng = uri, random.Random(seed)
        self.acked, self.unacked, self.failed = {}, {}, 0
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.writes = 0
        self.touched = set()  # slots written (or tried) since mark_touched()

    def retarget(self, uri):
        with self.lock:
            self.uri = uri

    def mark_touched(self):
        with self.lock:
            self.touched = set()

    def touched_count(self):
        with self.lock:
            return len(self.touched)

    def run(self):
        h, uri = None, None
        while not self.stop_flag.is_set():
            attempt = None
            with self.lock:
                want = self.uri
            try:
                if h is None or uri != want:
                    if h is not None:
                        h.shutdown()
                    h, uri = H.nbd_connect(want), want
                slot = self.rng.randrange(SIZE // self.SLOT)
                data = self.rng.randbytes(self.rng.choice([4, 16, 64]) * H.KiB)
                with self.lock:
                    self.touched.add(slot)  # before the write: it may land unacknowledged
                attempt = (slot * self.SLOT, data)
                h.pwrite(data, slot * self.SLOT)
                if self.rng.random() < 0.2:
                    h.flush()
                with self.lock:
                    self.acked[slot * self.SLOT] = data
                    self.unacked.pop(slot * self.SLOT, None)
                    self.writes += 1
                time.sleep(0.005)
            except Exception:
                # The old primary stopped serving: not acknowledged, so nothing is promised.
                self.failed += 1
                if attempt is not None:
                    with self.lock:
                        self.unacked.setdefault(attempt[0], []).append(attempt[1])
                h = None
                time.sleep(0.05)
        if h is not None:
            h.shutdown()

    def check(self, store, what):
        with self.lock:
            items = dict(self.acked)
            unacked = {offset: list(tries) for offset, tries in self.unacked.items()}
        for offset, data in items.items():
            if H.pread(store, offset, len(data)) == data:
                continue
            tries = unacked.get(offset, [])
            H.check(any(H.pread(store, offset, len(d)) == d for d in tries),
                    f"{what}: acknowledged write at {offset} ({len(data)} bytes) lost "
                    f"({len(tries)} failed writes tried there since, none of them found either)")
            H.log(f"{what}: slot at {offset} holds a write that failed after the acknowledged "
                  f"one (allowed: a failed write may land)")
        return len(items)


def body(case):
    H.require_nbd_module()
    a_bitmap = case.path("a.bm")
    a, b, ports = H.dr_pair(case, VOLUME, f"{a_bitmap},64K,1")
    H.wait_in_sync(a, timeout=60, secondary=b)
    w = Writer(a.uri, case.seed)
    w.thread.start()
    H.wait_for(lambda: w.writes >= 50, 20, "the client to write", procs=[a.proc, b.proc])

    # ---- 1. repl-primary hands over to repl-secondary ----------------------------------------
    # A slot is one bitmap chunk: a catch-up by bitmap resyncs at most the slots the client
    # wrote since (a full copy would be all 1024 chunks, whatever the client did).
    w.mark_touched()
    r = json.loads(H.ctl(a, "switchover", VOLUME, "--json", timeout=90))
    H.log(f"1: switchover on A: {r}")
    H.check_eq(r["new_primary_nbd_address"], f"127.0.0.1:{ports.b_nbd}", "1: new primary address")
    H.check_eq(r["this_side"], "handed-over", "1: A's side")
    w.retarget(f"nbd://{r['new_primary_nbd_address']}/{VOLUME}")
    st_b = H.wait_status(b, lambda s: s["role"] == "primary" and s["promoted"], 20,
                       "1: B to serve the volume")
    H.check_eq(a.status()["role"], "handed-over", "1: A's role")
    before = w.writes
    H.wait_for(lambda: w.writes >= before + 50, 20, "1: the client to write to B",
               procs=[a.proc, b.proc])
    a.stop()
    r2 = H.run(a.argv, timeout=20, check_rc=False)
    H.check(r2.returncode != 0 and "handed over" in r2.stderr,
            f"1: repl-primary must refuse the handed-over store: rc {r2.returncode} {r2.stderr}")
    a2 = H.dr_failback(case, a, b, ports, VOLUME, a_bitmap)
    st_b = H.wait_status(b, lambda s: s["connection"] == "connected"
                         and s["sync_state"] != "resyncing", 30, "1: A to catch up",
                         procs=[a2.proc])
    touched = w.touched_count()
    H.log(f"1: A caught up: {st_b['resynced_chunks_total']} chunks resynced, {touched} written")
    H.check(st_b["resynced_chunks_total"] <= touched,
            f"1: A must catch up by bitmap, not a full copy: {st_b['resynced_chunks_total']} "
            f"chunks resynced, the client wrote {touched} since the switchover")
    before = w.writes
    H.wait_for(lambda: w.writes >= before + 30, 20, "1: more client writes on B",
               procs=[a2.proc, b.proc])

    # ---- 2. back: the promoted volume hands over and becomes a replica ----------------------
    r = json.loads(H.ctl(b, "switchover", VOLUME, "--json", timeout=90))
    H.log(f"2: switchover on B: {r}")
    H.check_eq(r["new_primary_nbd_address"], f"127.0.0.1:{ports.a_nbd}", "2: new primary address")
    H.check_eq(r["this_side"], "replica", "2: B's side")
    w.retarget(f"nbd://{r['new_primary_nbd_address']}/{VOLUME}")
    H.wait_status(a2, lambda s: s["role"] == "primary" and s["connection"] == "connected", 30,
                "2: A to serve and replicate to B", procs=[b.proc])
    before = w.writes
    H.wait_for(lambda: w.writes >= before + 50, 20, "2: the client to write to A",
               procs=[a2.proc, b.proc])
    w.stop_flag.set()
    w.thread.join(10)
    st = H.wait_in_sync(a2, timeout=60, secondary=b)
    touched = w.touched_count()
    H.log(f"2: B caught up: {st['resynced_chunks_total']} chunks resynced, {touched} written")
    H.check(st["resynced_chunks_total"] <= touched,
            f"2: B must catch up by bitmap, not a full copy: {st['resynced_chunks_total']} "
            f"chunks resynced, the client wrote {touched} since the first switchover")
    H.assert_same_files(a.store, b.store)
    n = w.check(a.store, "2")
    H.log(f"{w.writes} acknowledged writes ({n} distinct slots) all present on both stores; "
          f"{w.failed} writes failed during the switchovers and were retried elsewhere")
    for agent in (a2, b):
        agent.stop()


if __name__ == "__main__":
    H.main(body)
