#!/usr/bin/python3
"""The primary dies in the middle of a resync: the secondary's undo log rolls its image back to
the consistent state it had when the resync began, and the next primary gives it a full sync.

1. A pair (64 MiB, --bitmap=F,65536,1) syncs. The secondary stops (SIGTERM, exit 0); 512 distinct
   64 KiB chunks (seeded) are rewritten with random data through NBD (the primary flags exactly
   512 dirty chunks). The secondary's store is copied: the "older point". `replctl resync rate 2M`
   on the primary; the secondary restarts. Once the resync pass of 512 chunks is part way (96 <=
   resync_done_chunks < resync_total_chunks == 512) and the secondary reports consistent=false,
   undo_available=true and a non-empty undo log, the primary gets SIGKILL.
2. The secondary (still running) says consistent=false, undo_available=true; its store differs
   from the older point (resync chunks landed); it stops with SIGTERM (exit 0); its meta file says
   consistent=0, undo_valid=1. Restarted with no primary (the operator's decision point), it must
   still report consistent=false, undo_available=true and the undo log's size, and leave the store
   untouched; it stops again.
3. `repl-secondary <same flags> --rollback-resync` exits 0; the store equals the older point byte
   for byte; the meta file says consistent=1, undo_valid=0, followed_generation "rolled-back-<the
   primary's generation>"; the undo log is empty. A second --rollback-resync is refused (exit 1,
   the image is consistent) and changes nothing.
4. The secondary restarts: status consistent=true, undo_available=false, generation
   "rolled-back-...". The primary restarts on its bitmap file (left by the kill -9): since the
   secondary follows the rolled-back history, the primary must do a FULL sync (its log says so;
   resync_total_bytes == resynced_bytes_total == the volume size), never a bitmap resync that
   would leave the rolled-back chunks stale; in_sync, the secondary follows the primary's
   generation and is consistent, stores equal byte for byte.
"""
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
NWRITE = 512
# Chunks resynced before the kill: ~3 s at 2 MiB/s, so the first ones' bits are usually cleared
# on the primary already (the rollback makes those chunks stale again on the secondary).
PART_WAY = 96


def ctl(prim, *args):
    H.log(f"$ replctl --admin-socket={prim.admin} {' '.join(args)}")
    r = H.replctl(prim.admin, *args)
    H.check(r.returncode == 0, f"replctl {' '.join(args)}: exit {r.returncode}\n"
            f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r.stdout


def read_meta(path):
    meta = H.read_meta(path)
    H.log(f"meta {path}: {meta}")
    return meta


def log_has(proc, text):
    """`text` in the log of the current run of `proc` (the log file is shared by restarts)."""
    with open(proc.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    return text in log[log.rfind("\n=== ") + 1:]


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="undo", size="64M")
    prim = case.primary(sec.port, volume="undo", size="64M", bitmap=f"{bm},{CHUNK},1")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    gen = st["generation"]
    meta_path = str(sec.store) + ".meta"
    undo_path = meta_path + ".undo"

    # ---- 1. a resync of 512 chunks, slowed down, interrupted by kill -9 of the primary --------
    sec.stop()
    chunks = sorted(rng.sample(range(NCHUNKS), NWRITE))
    H.log(f"1: rewriting {NWRITE} chunks with the secondary down: {chunks[:16]}...")
    h = H.nbd_connect(prim.uri)
    try:
        for c in chunks:
            h.pwrite(rng.randbytes(CHUNK), c * CHUNK)
        h.flush()
    finally:
        h.shutdown()
    H.wait_for(lambda: prim.status()["dirty_chunks"] == NWRITE, 15,
               f"1: the primary to flag {NWRITE} dirty chunks", procs=[prim.proc])
    # Writing without its secondary started a new data generation (the bits count from `gen`).
    st = prim.status()
    H.check(st["generation"] != gen and st["diverged_from"] == gen,
            f"1: the primary's data history after writing alone: {st}")
    gen = st["generation"]
    older = case.path("older.img")
    shutil.copyfile(sec.store, older)
    H.log(f"1: saved the secondary's store as the older point: {older}")
    H.check(H.compare_files(prim.store, older) is not None,
            "1: the older point already equals the primary: the writes did not land")
    ctl(prim, "resync", "rate", "2M")
    sec.restart()

    def part_way():
        p = prim.status()
        if not (p["sync_state"] == "resyncing" and p["resync_total_chunks"] == NWRITE
                and PART_WAY <= p["resync_done_chunks"] < NWRITE):
            return None
        s = sec.status()
        if s["consistent"] is False and s["undo_available"] is True and s["undo_log_bytes"] > 0:
            return p, s
        return None
    p, s = H.wait_for(part_way, 30, f"1: the resync of {NWRITE} chunks to be part way with the "
                      f"secondary inconsistent and an undo log", interval=0.1,
                      procs=[prim.proc, sec.proc])
    H.log(f"1: part way: primary resync_done_chunks={p['resync_done_chunks']}/"
          f"{p['resync_total_chunks']}; secondary consistent={s['consistent']} undo_available="
          f"{s['undo_available']} undo_log_bytes={s['undo_log_bytes']} sync_state="
          f"{s['sync_state']}")
    H.check_eq(s["sync_state"], "resyncing", "1: the secondary's sync_state mid-resync")
    prim.kill9()
    r = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm])
    left = json.loads(r.stdout)["dirty_chunks"]
    H.log(f"1: the primary's bitmap file flags {left} of the {NWRITE} chunks after the kill"
          + (f" (the other {NWRITE - left} were resynced and lazily cleared: a bitmap resync "
             f"after the rollback would leave them stale on the secondary)"
             if left < NWRITE else ""))

    # ---- 2. the secondary after losing its primary mid-resync ---------------------------------
    s = H.wait_for(lambda: (lambda x: x if x["connection"] != "connected" else None)(
        sec.status()), 15, "2: the secondary to notice the lost primary", procs=[sec.proc])
    H.log(f"2: secondary: consistent={s['consistent']} undo_available={s['undo_available']} "
          f"undo_log_bytes={s['undo_log_bytes']} resynced_bytes_total="
          f"{s['resynced_bytes_total']}")
    H.check(s["consistent"] is False and s["undo_available"] is True,
            f"2: after losing the primary mid-resync the secondary must be inconsistent with an "
            f"undo log available: {s}")
    H.check(s["resynced_bytes_total"] > 0, f"2: no resync data reached the secondary: {s}")
    diff = H.compare_files(sec.store, older)
    H.check(diff is not None, "2: the secondary's store still equals the older point although "
            "resync chunks were applied: the rollback would prove nothing")
    H.log(f"2: the secondary's store moved away from the older point: {diff}")
    sec.stop()
    meta = read_meta(meta_path)
    H.check_eq((meta.get("consistent"), meta.get("undo_valid")), ("0", "1"),
               "2: meta (consistent, undo_valid) after the interrupted resync")
    H.check_eq(meta.get("followed_generation"), gen, "2: meta followed_generation")
    H.check(os.path.getsize(undo_path) > 0, f"2: the undo log {undo_path} is empty")
    # The operator's decision point: the secondary restarted with no primary in sight must
    # still say the interrupted resync can be rolled back.
    interrupted = H.file_hash(sec.store)
    sec.restart()
    s = sec.status()
    H.log(f"2: restarted without a primary: consistent={s['consistent']} undo_available="
          f"{s['undo_available']} undo_log_bytes={s['undo_log_bytes']} sync_state="
          f"{s['sync_state']}")
    H.check(s["consistent"] is False and s["undo_available"] is True
            and s["undo_log_bytes"] == os.path.getsize(undo_path),
            f"2: a secondary restarted after an interrupted resync must report consistent=false, "
            f"undo_available=true and its undo log size ({os.path.getsize(undo_path)} bytes) "
            f"until a primary connects: {s}")
    sec.stop()
    H.check_eq(H.file_hash(sec.store), interrupted, "2: store hash across a restart without "
               "a primary")

    # ---- 3. roll back -------------------------------------------------------------------------
    r = H.run(sec.argv + ["--rollback-resync"], timeout=60, check_rc=False)
    H.check(r.returncode == 0, f"3: --rollback-resync exit {r.returncode}\nstdout: {r.stdout}\n"
            f"stderr: {r.stderr}")
    H.log(f"3: rollback output: {(r.stdout + r.stderr).strip()}")
    H.assert_same_files(sec.store, older)
    meta = read_meta(meta_path)
    H.check_eq((meta.get("consistent"), meta.get("undo_valid")), ("1", "0"),
               "3: meta (consistent, undo_valid) after the rollback")
    H.check_eq(meta.get("followed_generation"), f"rolled-back-{gen}",
               "3: meta followed_generation after the rollback")
    H.check_eq(os.path.getsize(undo_path), 0, "3: undo log size after the rollback")
    r = H.run(sec.argv + ["--rollback-resync"], timeout=60, check_rc=False)
    H.check(r.returncode == 1, f"3: a second --rollback-resync on a consistent image must be "
            f"refused with exit 1, got {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    H.log(f"3: second rollback refused: {r.stderr.strip()}")
    H.assert_same_files(sec.store, older)

    # ---- 4. the next primary must give the rolled-back image a full sync ----------------------
    sec.restart()
    s = sec.status()
    H.check(s["consistent"] is True and s["undo_available"] is False
            and s["generation"] == f"rolled-back-{gen}",
            f"4: the secondary's status after the rollback: {s}")
    prim.restart()
    H.wait_for(lambda: log_has(prim.proc, f"another history (rolled-back-{gen})"), 20,
               "4: the primary's log line about a full sync from the rolled-back history",
               procs=[prim.proc, sec.proc])
    st = H.wait_for(lambda: (lambda x: x if x["resync_total_bytes"] > 0 else None)(
        prim.status()), 20, "4: a resync pass to start", procs=[prim.proc, sec.proc])
    H.check_eq(st["resync_total_bytes"], SIZE, "4: resync_total_bytes after the rollback "
               "(must be a FULL sync)")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "4: resynced_bytes_total of the full sync")
    H.check_eq(st["generation"], gen, "4: the primary kept its bitmap file's generation")
    s = sec.status()
    H.check(s["consistent"] is True and s["generation"] == gen,
            f"4: the secondary must follow the primary's generation and be consistent: {s}")
    H.stop_pair_and_compare(prim, sec)


if __name__ == "__main__":
    H.main(body, default_seed=31337)
