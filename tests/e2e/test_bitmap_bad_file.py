#!/usr/bin/python3
"""A bitmap file that cannot be trusted is refused, touching nothing; --force-full-resync recovers.

A pair (64 MiB, --bitmap=F,65536,1) syncs random data, then the primary stops cleanly; the
secondary keeps running. Each refused start below must exit 1 within 20 s with exactly one line
on stderr naming the file, and leave the primary's store, the secondary's store and meta, the
secondary's status (generation, consistent) and the bitmap file itself byte for byte unchanged:

1. both header slots corrupted (bytes at offsets 30 and 4096+30): the line says "checksum";
2. the file truncated inside the header (6000 bytes) and after the header but before the bits
   page (8192+100 bytes): the line says "truncated";
3. a file made by a primary on a 32 MiB store, used with the 64 MiB store: the line names both
   sizes (33554432 and 67108864);
4. `--force-full-resync` with the corrupt file of 1: starts, replaces the file (log line), does a
   full resync (resync_total_bytes == resynced_bytes_total == 64 MiB), stores equal;
5. a second primary (own store, ports, admin socket) on the same bitmap file while the first one
   runs: exit 1, one line naming the file and saying "in use"; the first primary is unaffected
   (still in sync after more writes, stores equal);
6. the same with `--force-full-resync`: the option replaces a damaged or unfitting file, never
   one a running primary holds: exit 1 "in use", the running primary's file keeps its inode
   and identity.
"""
import json
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB


def corrupt(path, offset):
    """Inverts four bytes: always a change, whatever (random) bytes were there."""
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 4, offset)
        os.pwrite(fd, bytes(b ^ 0xFF for b in old), offset)
    finally:
        os.close(fd)


def write_random(prim, rng, n):
    h = H.nbd_connect(prim.uri)
    try:
        for _ in range(n):
            size = rng.choice([4096, 65536, 262144])
            off = rng.randrange(0, (SIZE - size) // 4096 + 1) * 4096
            h.pwrite(rng.randbytes(size), off)
        h.flush()
    finally:
        h.shutdown()
    H.log(f"wrote {n} random extents through NBD")


def log_has(proc, text):
    with open(proc.log_path, "rb") as f:
        return text in f.read().decode(errors="replace")


def run_refused(argv, what):
    """Run a primary that must refuse to start: (stderr line, CompletedProcess)."""
    argv = [str(a) for a in argv]
    H.log(f"{what}: $ {' '.join(argv)}")
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=20, preexec_fn=H._child_setup)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise H.Fail(f"{what}: the primary started and ran for 20 s (killed), expected exit 1; "
                     f"its stderr:\n{err}")
    H.log(f"{what}: exit {r.returncode}, stderr {r.stderr!r}")
    H.check(r.returncode == 1, f"{what}: exit {r.returncode}, expected 1\nstdout: {r.stdout}\n"
            f"stderr: {r.stderr}")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    H.check(len(lines) == 1, f"{what}: expected exactly one line on stderr, got {len(lines)}: "
            f"{r.stderr!r}")
    H.check(r.stdout.strip() == "", f"{what}: nothing expected on stdout, got {r.stdout!r}")
    return lines[0], r


class Snapshot:
    """Hashes of everything a refused start must not touch."""

    def __init__(self, files, sec):
        self.files = [str(f) for f in files]
        self.sec = sec
        self.hashes = {f: H.file_hash(f) for f in self.files}
        st = sec.status()
        self.sec_state = (st.get("generation"), st.get("consistent"))

    def check_unchanged(self, what):
        for f in self.files:
            H.check(H.file_hash(f) == self.hashes[f], f"{what}: {f} changed (a refused start "
                    f"must touch nothing)")
        st = self.sec.status()
        H.check_eq((st.get("generation"), st.get("consistent")), self.sec_state,
                   f"{what}: secondary (generation, consistent)")
        H.log(f"{what}: nothing touched ({len(self.files)} files, secondary state)")


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="bad", size="64M")
    prim = case.primary(sec.port, volume="bad", size="64M", bitmap=f"{bm},{CHUNK},1")
    store = prim.store
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    write_random(prim, rng, 200)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    prim.stop()
    H.assert_same_files(store, sec.store)
    good = case.path("good.bm")
    shutil.copyfile(bm, good)
    sec_meta = f"{sec.store}.meta"
    H.check(os.path.exists(sec_meta), f"secondary meta {sec_meta} missing")

    def primary_argv(bitmap_path, store_path=store, extra=(), secondary_port=sec.port):
        a = case.primary(secondary_port, volume="bad", store=store_path, size="64M",
                         bitmap=f"{bitmap_path},{CHUNK},1", extra=extra, start=False)
        return a

    # The second primaries of 5 and 6 point at a port nobody listens on: should one start by
    # mistake, it must not reach (and resync over) the running pair's secondary.
    nowhere = H.free_port()

    # 1. Both header slots corrupt.
    corrupt(bm, 30)
    corrupt(bm, 4096 + 30)
    snap = Snapshot([store, sec.store, sec_meta, bm], sec)
    line, _ = run_refused(primary_argv(bm).argv, "both header slots corrupt")
    H.check(str(bm) in line and "checksum" in line,
            f"both header slots corrupt: the line must name {bm} and say 'checksum': {line!r}")
    snap.check_unchanged("both header slots corrupt")

    # 2. Truncated files.
    for n in (6000, 8192 + 100):
        tr = case.path(f"trunc{n}.bm")
        shutil.copyfile(good, tr)
        os.truncate(tr, n)
        snap = Snapshot([store, sec.store, sec_meta, tr], sec)
        line, _ = run_refused(primary_argv(tr).argv, f"file truncated to {n} bytes")
        H.check(str(tr) in line and "truncated" in line,
                f"truncated to {n}: the line must name {tr} and say 'truncated': {line!r}")
        snap.check_unchanged(f"file truncated to {n} bytes")

    # 3. A bitmap file of another volume size.
    bm32 = case.path("vol32.bm")
    p32 = case.primary(H.free_port(), volume="bad", store=case.path("small.img"), size="32M",
                       bitmap=f"{bm32},{CHUNK},1")
    p32.stop()
    doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm32]).stdout)
    H.check_eq(doc["volume_size"], 32 * H.MiB, "volume_size of the 32 MiB primary's file")
    snap = Snapshot([store, sec.store, sec_meta, bm32], sec)
    line, _ = run_refused(primary_argv(bm32).argv, "bitmap file of a 32 MiB volume")
    H.check(str(bm32) in line and str(32 * H.MiB) in line and str(SIZE) in line,
            f"size mismatch: the line must name {bm32}, {32 * H.MiB} and {SIZE}: {line!r}")
    snap.check_unchanged("bitmap file of a 32 MiB volume")

    # 4. --force-full-resync with the corrupt file: replaced, full resync.
    before_conn = sec.status().get("generation")
    prim = primary_argv(bm, extra=["--force-full-resync"])
    prim.start()
    H.wait_for(lambda: log_has(prim.proc, f"replaced bitmap file {bm}"), 10,
               "the log line 'replaced bitmap file ...'", procs=[prim.proc])
    st = H.wait_for(lambda: (lambda s: s if s["resync_total_bytes"] > 0 else None)(prim.status()),
                    30, "a resync pass to start", procs=[prim.proc, sec.proc])
    H.check_eq(st["resync_total_bytes"], SIZE, "resync_total_bytes with --force-full-resync")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check_eq(st["resynced_bytes_total"], SIZE, "resynced_bytes_total with --force-full-resync")
    H.check(st["generation"] != before_conn, "--force-full-resync kept the old generation")
    H.assert_same_files(store, sec.store)
    doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm]).stdout)
    H.check_eq((doc["volume_size"], doc["chunk_size"], doc["damaged_pages"]), (SIZE, CHUNK, []),
               "the replaced file")

    # 5. The same file used by a second primary at once.
    other = case.path("other.img")
    H.make_sparse(other, SIZE)
    H.wait_for(lambda: prim.status()["bitmap_bits_set"] == 0, 15,
               "the first primary's bitmap to be clear (lazy clearing)", interval=0.2,
               procs=[prim.proc, sec.proc])
    bm_hash = H.file_hash(bm)
    line, _ = run_refused(primary_argv(bm, store_path=other, secondary_port=nowhere).argv,
                          "bitmap file in use")
    H.check(str(bm) in line and "in use" in line,
            f"in use: the line must name {bm} and say 'in use': {line!r}")
    H.check(prim.alive(), "the first primary died when a second one tried its bitmap file")
    H.check_eq(H.file_hash(bm), bm_hash, "the bitmap file after the refused second primary")
    write_random(prim, rng, 100)
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.assert_same_files(store, sec.store)

    # 6. --force-full-resync replaces a file that is damaged or does not fit; a file in use is
    # neither: the second primary must still be refused, and the running primary's file must
    # stay where it is (same inode, same identity).
    doc0 = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm]).stdout)
    ino = os.stat(bm).st_ino
    line, _ = run_refused(primary_argv(bm, store_path=other, extra=["--force-full-resync"],
                                       secondary_port=nowhere).argv,
                          "bitmap file in use, second primary with --force-full-resync")
    H.check(str(bm) in line and "in use" in line, f"in use + force: {line!r}")
    H.check_eq(os.stat(bm).st_ino, ino, "inode of the running primary's bitmap file")
    doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm]).stdout)
    H.check_eq((doc["volume_uuid"], doc["generation"]), (doc0["volume_uuid"], doc0["generation"]),
               "identity of the running primary's bitmap file")
    prim.stop()
    sec.stop()
    H.assert_same_files(store, sec.store)


if __name__ == "__main__":
    H.main(body, default_seed=5150)
