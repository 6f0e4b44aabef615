#!/usr/bin/python3
"""Disaster recovery, the routine path: the primary's site is lost, the secondary is promoted,
the old primary fails back by bitmap, and the roles are swapped back without a full copy.

1. Site A runs repl-primary (bitmap file, 1 s clearing), site B repl-secondary with --nbd-listen
   and --peer (A's future replication address). 64 MiB of random data, in sync, A's bitmap clean.
2. B is frozen (SIGSTOP) while a client writes chunk set SA on A (acknowledged by A, never
   replicated: async write-behind), then A is killed for good (SIGKILL) and B thaws.
3. `replctl promote` on B: served over NBD by the same repl-secondary; a client writes chunk set
   SB (overlapping SA by one chunk) on B; B flags exactly SB and says it diverged from the old
   generation.
4. A returns as `repl-secondary --bitmap A.bm` on its old store. B's stream reaches it: the reverse
   resync must move exactly |SA u SB| chunks (B's resynced_chunks_total), A's own bits are cleared,
   the stores are equal byte for byte, and SA's chunks hold B's data (A's unreplicated writes were
   lost with its site, as async replication allows).
5. Swap back: `replctl demote` on B (the peer is in sync), `replctl promote` on A; a client writes
   chunk set SC on A; B takes it without a full copy (A's resync moves at most |SC| chunks);
   equal stores. A restart of A's repl-secondary serves the volume as a primary again.
"""
import json
import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
VOLUME = "dr"


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    a_bitmap = case.path("a.bm")
    a, b, ports = H.dr_pair(case, VOLUME, f"{a_bitmap},{CHUNK},1", extra=["--peer-timeout=3"])

    # ---- 1. a replicated volume with data ------------------------------------------------------
    H.write_chunks(a.uri, range(0, NCHUNKS, 3), rng, CHUNK)
    H.wait_in_sync(a, timeout=60, secondary=b)
    H.wait_status(a, lambda s: s["bitmap_bits_set"] == 0, 20, "1: A's bitmap to be lazily cleared")
    gen1 = a.status()["generation"]
    # B follows the generation A holds (A's history may move while the first handshake is under
    # way, when the client's first writes find no secondary yet: A then handshakes again).
    H.check_eq(b.status()["generation"], gen1, "1: the generation B follows")
    H.assert_same_files(a.store, b.store)

    # ---- 2. site A lost with writes B never got ----------------------------------------------
    sa = sorted(rng.sample(range(NCHUNKS), 12))
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        H.write_chunks(a.uri, sa, rng, CHUNK, flush=False)
        H.wait_for(lambda: a.status()["dirty_chunks"] == len(sa), 10,
                   "2: A to flag the unreplicated chunks", procs=[a.proc])
        a.kill9()
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    H.log(f"2: site A killed with {len(sa)} chunks B never acknowledged: {sa}")

    # ---- 3. promote B -------------------------------------------------------------------------
    H.wait_status(b, lambda s: s["connection"] != "connected", 20, "3: B to notice A is gone")
    r = H.ctl(b, "promote", VOLUME, "--json")
    H.log(f"3: promote: {r.strip()}")
    st = b.status()
    H.check(st["role"] == "primary" and st["promoted"] is True
            and st["nbd_address"] == f"127.0.0.1:{ports.b_nbd}", f"3: B after promote: {st}")
    rest = [c for c in range(NCHUNKS) if c not in sa]
    sb = sorted(rng.sample(rest, 9) + [sa[0]])
    b_data = H.write_chunks(H.promoted_uri(st, VOLUME), sb, rng, CHUNK)
    st = H.wait_status(b, lambda s: s["dirty_chunks"] == len(sb), 10, "3: B to flag its writes")
    H.check(st["diverged_from"] == gen1 and st["generation"] != gen1,
            f"3: B's data history after writing on its own: {st}")
    H.log(f"3: B wrote {len(sb)} chunks as the new primary: generation {st['generation']}, "
          f"diverged from {gen1}")

    # ---- 4. A fails back as B's secondary ----------------------------------------------------
    a2 = H.dr_failback(case, a, b, ports, VOLUME, a_bitmap, extra=["--peer-timeout=3"])
    union = sorted(set(sa) | set(sb))
    st = H.wait_in_sync(b, timeout=90, secondary=a2)
    H.check_eq(st["resynced_chunks_total"], len(union),
               "4: chunks moved by the reverse resync (|SA u SB|)")
    H.log(f"4: reverse resync moved exactly {len(union)} chunks ({len(sa)} written only on A, "
          f"{len(sb)} on B, 1 on both) of {NCHUNKS}")
    s2 = a2.status()
    H.check(s2["role"] == "secondary" and s2["consistent"] is True
            and s2["generation"] == st["generation"] and s2["diverged_from"] == "",
            f"4: A after failing back: {s2}")
    examined = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", a_bitmap]).stdout
    H.check('"dirty_chunks":0' in examined, f"4: A's own bits must be cleared: {examined}")
    H.assert_same_files(a.store, b.store)
    for c in sb:
        H.check(H.pread(a.store, c * CHUNK, CHUNK) == b_data[c], f"4: chunk {c} is B's")

    # ---- 5. swap the roles back without a full copy ------------------------------------------
    r = H.ctl(b, "demote", VOLUME, "--json")
    H.log(f"5: demote B: {r.strip()}")
    H.check(json.loads(r).get("peer_in_sync") is True, f"5: demote reply: {r}")
    st = b.status()
    H.check(st["role"] == "secondary" and st["promoted"] is False, f"5: B after demote: {st}")
    H.wait_status(a2, lambda s: s["connection"] != "connected", 20, "5: A to see B's stream end")
    r = H.ctl(a2, "promote", VOLUME, "--json")
    H.log(f"5: promote A: {r.strip()}")
    st = H.wait_status(a2, lambda s: s["connection"] == "connected", 20, "5: A to reach B")
    sc = sorted(rng.sample(range(NCHUNKS), 7))
    H.write_chunks(H.promoted_uri(st, VOLUME), sc, rng, CHUNK)
    st = H.wait_in_sync(a2, timeout=60, secondary=b)
    H.check(st["resynced_chunks_total"] <= len(sc),
            f"5: A must not copy more than its {len(sc)} new chunks: {st['resynced_chunks_total']}")
    H.assert_same_files(a.store, b.store)
    H.log(f"5: roles swapped back; A resynced {st['resynced_chunks_total']} chunks")

    # A promoted volume stays promoted across a restart of its agent.
    a2.stop()
    a2.restart()
    st = H.wait_status(a2, lambda s: s["role"] == "primary" and s["promoted"], 20,
                     "5: A to come back as the primary")
    H.write_chunks(H.promoted_uri(st, VOLUME), sc[:2], rng, CHUNK)
    H.wait_in_sync(a2, timeout=60, secondary=b)
    H.assert_same_files(a.store, b.store)
    for agent in (a2, b):
        agent.stop()


if __name__ == "__main__":
    H.main(body)
