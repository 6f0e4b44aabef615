#!/usr/bin/python3
"""`replctl bitmap examine` and `replctl bitmap rescale` on a real bitmap file left by a crash.

A pair (64 MiB, bitmap file with 64 KiB chunks, 1 s clearing period) syncs and its bitmap empties.
The secondary is frozen (SIGSTOP), so writes are never acked and their bits stay set; nbdsh writes
into a few chunks; examine works while the primary runs (read-only, no lock) and rescale is refused
(the primary holds the lock). The primary is killed with SIGKILL and the secondary stopped. Then:
examine --json reports exactly the written chunks and state "running" (not cleanly stopped); the
human form says the same; with one header slot corrupted examine still works; an offline rescale to
16 KiB chunks reports and stores 4x the dirty chunks with the same identity; with both header slots
corrupted examine exits 1 with one line naming the file.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
WRITTEN_CHUNKS = [0, 5, 17, 300, 301, 1023]  # chunk 1023 is the last one


def examine(bm, *extra, expect_rc=0):
    r = H.run([H.BIN / "replctl", "bitmap", "examine", *extra, bm], check_rc=False)
    H.check(r.returncode == expect_rc,
            f"examine exit {r.returncode}, expected {expect_rc}\nstdout: {r.stdout}\n"
            f"stderr: {r.stderr}")
    return r


def examine_json(bm):
    r = examine(bm, "--json")
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise H.Fail(f"examine --json printed invalid JSON ({e}): {r.stdout!r}")
    H.log(f"examine --json: {doc}")
    return doc


def corrupt(path, offset):
    """Inverts four bytes: always a change, whatever (random) bytes were there."""
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 4, offset)
        os.pwrite(fd, bytes(b ^ 0xFF for b in old), offset)
    finally:
        os.close(fd)


def check_one_error_line(r, path, what):
    lines = r.stderr.splitlines()
    H.check(len(lines) == 1 and lines[0].startswith("replctl: ") and str(path) in lines[0],
            f"{what}: expected one line 'replctl: ...' naming {path}, got {r.stderr!r}")
    H.check(r.stdout == "", f"{what}: nothing expected on stdout, got {r.stdout!r}")


def body(case):
    H.require_tools("nbdsh")
    bm = case.path("vol0.bm")
    sec = case.secondary(volume="vol0", size="64M")
    prim = case.primary(sec.port, volume="vol0", size="64M", bitmap=f"{bm},{CHUNK},1")
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    # The full sync set every bit; the 1 s clearing daemon empties the file lazily.
    H.wait_for(lambda: examine_json(bm)["dirty_chunks"] == 0, 15,
               "the bitmap file to be clear after the initial sync (examine while running)",
               interval=0.5, procs=[prim.proc, sec.proc])

    H.log(f"freezing {sec.name} (SIGSTOP pid {sec.proc.pid}): no acks, bits stay set")
    os.kill(sec.proc.pid, signal.SIGSTOP)
    try:
        writes = "\n".join(f"h.pwrite(b'\\xab' * 4096, {c * CHUNK + 8192})" for c in WRITTEN_CHUNKS)
        H.run(["nbdsh", "-u", prim.uri, "-c", writes + "\nprint('written')"], timeout=30)
        H.wait_for(lambda: prim.status()["dirty_chunks"] == len(WRITTEN_CHUNKS), 10,
                   f"{len(WRITTEN_CHUNKS)} dirty chunks on the primary", procs=[prim.proc])
        doc = examine_json(bm)
        H.check_eq(doc["dirty_chunks"], len(WRITTEN_CHUNKS), "dirty chunks in the file while "
                   "running (bits are durable before a write is issued)")
        r = H.run([H.BIN / "replctl", "bitmap", "rescale", "--chunk=16K", bm], check_rc=False)
        H.check_eq(r.returncode, 1, f"rescale of a file in use: exit code (stderr {r.stderr!r})")
        check_one_error_line(r, bm, "rescale of a file in use")
        H.check("in use" in r.stderr, f"rescale of a file in use: {r.stderr!r}")
        prim.kill9()
    finally:
        os.kill(sec.proc.pid, signal.SIGCONT)
    sec.stop()

    doc = examine_json(bm)
    H.check_eq(doc["file"], str(bm), "file")
    H.check_eq(doc["version"], 2, "version")
    H.check_eq(doc["state"], "running", "state after SIGKILL")
    H.check_eq(doc["clean"], False, "clean after SIGKILL")
    H.check_eq(doc["chunk_size"], CHUNK, "chunk_size")
    H.check_eq(doc["daemon_sleep_ms"], 1000, "daemon_sleep_ms")
    H.check_eq(doc["volume_size"], SIZE, "volume_size")
    H.check_eq(doc["chunks"], SIZE // CHUNK, "chunks")
    H.check_eq(doc["dirty_chunks"], len(WRITTEN_CHUNKS), "dirty_chunks")
    H.check_eq((doc["pages"], doc["dirty_pages"], doc["damaged_pages"]), (1, 1, []), "pages")
    H.check(len(doc["volume_uuid"]) == 32 and len(doc["generation"]) == 32, f"ids: {doc}")
    H.check(doc["events"] >= 2 and doc["events_cleared"] <= doc["events"], f"events: {doc}")
    identity = (doc["volume_uuid"], doc["generation"])

    text = examine(bm).stdout
    H.log("examine:\n" + text)
    for want in (f"Filename : {bm}", "Magic : BLKRBMP", "Version : 2",
                 f"Volume UUID : {identity[0]}", f"Generation : {identity[1]}",
                 "State : Running or crashed (not cleanly stopped)",
                 "Chunksize : 64 KiB (65536 bytes)", "Daemon : 1s flush period",
                 "Sync Size : 64.0 MiB (67108864 bytes)",
                 f"Bitmap : 1024 bits (chunks), {len(WRITTEN_CHUNKS)} dirty (0.6%), "
                 "1/1 pages with set bits", "Damaged pages : none"):
        H.check(want in text, f"examine output lacks {want!r}:\n{text}")

    # One header slot damaged: the other still describes the file.
    corrupt(bm, 24)
    doc = examine_json(bm)
    H.check_eq(doc["dirty_chunks"], len(WRITTEN_CHUNKS), "dirty_chunks with header slot A damaged")
    H.check_eq((doc["volume_uuid"], doc["generation"]), identity, "identity with slot A damaged")

    r = H.run([H.BIN / "replctl", "bitmap", "rescale", "--chunk=16384", bm])
    n = len(WRITTEN_CHUNKS)
    H.check_eq(r.stdout.strip(), f"{bm}: 65536 -> 16384 byte chunks, {n} -> {4 * n} dirty chunks",
               "rescale output")
    H.check(not os.path.exists(f"{bm}.rescale.tmp"), "rescale left its temp file behind")
    doc = examine_json(bm)
    H.check_eq(doc["chunk_size"], 16384, "chunk_size after rescale")
    H.check_eq(doc["chunks"], SIZE // 16384, "chunks after rescale")
    H.check_eq(doc["dirty_chunks"], 4 * n, "dirty_chunks after rescale (each 64K bit -> 4)")
    H.check_eq(doc["state"], "running", "state after rescale (still needs its resync)")
    H.check_eq((doc["volume_uuid"], doc["generation"]), identity, "identity after rescale")
    H.check_eq(doc["daemon_sleep_ms"], 1000, "daemon_sleep_ms after rescale")

    # The rescaled file drives the next start: exactly its dirty chunks are resynced.
    sec.restart()
    prim2 = case.primary(sec.port, volume="vol0", store=prim.store, size="64M",
                         bitmap=f"{bm},16384,1")
    st = H.wait_in_sync(prim2, timeout=60, secondary=sec)
    H.check_eq(st["chunk_size"], 16384, "chunk_size of the primary on the rescaled file")
    H.check_eq(st["resynced_bytes_total"], 4 * n * 16384, "bytes resynced from the rescaled file")
    prim2.stop()
    sec.stop()
    H.assert_same_files(prim.store, sec.store)
    H.check_eq(examine_json(bm)["state"], "clean", "state after a clean stop")

    # Bad usage: exit 2.
    for bad in ("--chunk=6000", "--chunk=2K", "--chunk=2G", "--chunk=lots"):
        r = H.run([H.BIN / "replctl", "bitmap", "rescale", bad, bm], check_rc=False)
        H.check_eq(r.returncode, 2, f"rescale {bad}: exit code (stderr {r.stderr!r})")

    # Both header slots damaged: refused with one line naming the file.
    corrupt(bm, 24)
    corrupt(bm, 4096 + 24)
    r = examine(bm, "--json", expect_rc=1)
    check_one_error_line(r, bm, "examine with both header slots damaged")
    H.log(f"both slots damaged: {r.stderr.strip()}")
    r = examine(case.path("missing.bm"), expect_rc=1)
    check_one_error_line(r, case.path("missing.bm"), "examine of a missing file")


if __name__ == "__main__":
    H.main(body, default_seed=1)
