#!/usr/bin/python3
"""Split brain: both sides wrote on their own since they were last in sync. It must be detected
and refused (no silent merge, no data moved), then resolved by the operator with each choice.

1. A runs repl-primary (bitmap file), B repl-secondary with --nbd-listen/--peer. In sync.
2. The link is cut by the operator on B (`replctl disconnect`); A keeps serving and writes chunk set
   SA1 (A's data history diverges); B is promoted and writes SB1 (B's diverges from the same
   point). A is stopped and rejoins as `repl-secondary --bitmap`: B's handshake is refused on both
   sides as a split brain (status split_brain, the error names both histories), and no data moves
   (A's store is unchanged).
3. Choice 1, `replctl resolve --discard=local` on A (the replica gives up its writes): the next
   handshake resyncs exactly |SA1 u SB1| chunks from B; equal stores; SA1 and SB1 hold B's data.
4. The other way round: A is cut off again (`replctl disconnect` on A), B writes SB2; A is
   promoted and writes SA2; B is demoted (--force: its peer lacks SB2). A's stream to B is refused
   as a split brain. `replctl resolve --discard=local` on A (the primary giving up its own writes)
   is refused with the demote/promote advice; choice 2, `--discard=remote` on A (B's writes
   overwritten), resyncs exactly |SA2 u SB2| chunks from A; equal stores; SA2 holds A's data.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
VOLUME = "sb"


def check_data(store, data, what):
    for c, want in data.items():
        H.check(H.pread(store, c * CHUNK, CHUNK) == want, f"{what}: chunk {c}")


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    a_bitmap = case.path("a.bm")
    a, b, ports = H.dr_pair(case, VOLUME, f"{a_bitmap},{CHUNK},1", extra=["--peer-timeout=3"])
    H.write_chunks(a.uri, range(0, NCHUNKS, 5), rng, CHUNK)
    H.wait_in_sync(a, timeout=60, secondary=b)

    # ---- 2. both sides write on their own -----------------------------------------------------
    H.ctl(b, "disconnect", f"--volume={VOLUME}")
    H.wait_status(a, lambda s: s["connection"] != "connected", 20, "2: A to lose B")
    sa1 = sorted(rng.sample(range(NCHUNKS), 8))
    H.write_chunks(a.uri, sa1, rng, CHUNK)
    st_a = a.status()
    H.check(st_a["diverged_from"] != "", f"2: A wrote alone: its history must diverge: {st_a}")
    H.ctl(b, "promote", VOLUME)
    sb1 = sorted(rng.sample([c for c in range(NCHUNKS) if c not in sa1], 6) + sa1[:2])
    b_data = H.write_chunks(H.promoted_uri(b.status(), VOLUME), sb1, rng, CHUNK)
    st_b = b.status()
    H.check(st_b["diverged_from"] == st_a["diverged_from"],
            f"2: both diverged from the same point: A {st_a['diverged_from']}, B {st_b}")
    a.stop()
    a_before = H.file_hash(a.store)
    a2 = H.dr_failback(case, a, b, ports, VOLUME, a_bitmap, extra=["--peer-timeout=3"])
    st_b = H.wait_status(b, lambda s: s["split_brain"], 30, "2: B to report the split brain",
                       procs=[a2.proc])
    H.check("split brain" in st_b["last_error"] and st_a["generation"] in st_b["last_error"]
            and st_b["generation"] in st_b["last_error"],
            f"2: B's error must name the split brain and both histories: {st_b['last_error']}")
    st_a2 = H.wait_status(a2, lambda s: s["split_brain"], 10, "2: A to report the split brain")
    H.check(st_a2["connection"] != "connected", f"2: A must refuse B's stream: {st_a2}")
    H.check_eq(H.file_hash(a.store), a_before, "2: A's store while the split brain is refused")
    H.log(f"2: split brain refused: {st_b['last_error'][:200]}...")

    # ---- 3. resolve: the replica (A) gives up its writes --------------------------------------
    H.log(H.ctl(a2, "resolve", VOLUME, "--discard=local").strip())
    union1 = sorted(set(sa1) | set(sb1))
    st_b = H.wait_in_sync(b, timeout=60, secondary=a2)
    H.check_eq(st_b["resynced_chunks_total"], len(union1), "3: chunks resynced (|SA1 u SB1|)")
    H.check(not st_b["split_brain"] and not a2.status()["split_brain"], "3: split brain cleared")
    H.assert_same_files(a.store, b.store)
    check_data(a.store, b_data, "3: B's writes on A")
    H.log(f"3: --discard=local on the replica: {len(union1)} chunks from B, stores equal")

    # ---- 4. the other way: keep A's writes, discard B's --------------------------------------
    H.ctl(a2, "disconnect", f"--volume={VOLUME}")
    H.wait_status(b, lambda s: s["connection"] != "connected", 20, "4: B to lose A")
    sb2 = sorted(rng.sample(range(NCHUNKS), 5))
    H.write_chunks(H.promoted_uri(b.status(), VOLUME), sb2, rng, CHUNK)
    H.ctl(a2, "promote", VOLUME)
    sa2 = sorted(rng.sample([c for c in range(NCHUNKS) if c not in sb2], 7) + sb2[:1])
    a_data = H.write_chunks(H.promoted_uri(a2.status(), VOLUME), sa2, rng, CHUNK)
    r = json.loads(H.ctl(b, "demote", VOLUME, "--force", "--timeout=1", "--json"))
    H.check(r.get("peer_in_sync") is not True, f"4: B's forced demote: {r}")
    st_a2 = H.wait_status(a2, lambda s: s["split_brain"], 30, "4: A to report the split brain",
                        procs=[b.proc])
    H.ctl(a2, "resolve", VOLUME, "--discard=local")
    st_a2 = H.wait_status(a2, lambda s: "replctl demote" in s["last_error"], 30,
                        "4: A (primary) refusing to discard its own writes by pushing")
    H.check(st_a2["connection"] != "connected", f"4: still refused: {st_a2}")
    H.log(H.ctl(a2, "resolve", VOLUME, "--discard=remote").strip())
    union2 = sorted(set(sa2) | set(sb2))
    st_a2 = H.wait_in_sync(a2, timeout=60, secondary=b)
    H.check_eq(st_a2["resynced_chunks_total"], len(union2), "4: chunks resynced (|SA2 u SB2|)")
    H.assert_same_files(a.store, b.store)
    check_data(b.store, a_data, "4: A's writes on B")
    H.log(f"4: --discard=remote on the primary: {len(union2)} chunks from A, stores equal")
    for agent in (a2, b):
        agent.stop()


if __name__ == "__main__":
    H.main(body)
