#!/usr/bin/python3
"""Store I/O faults (EIO, ENOSPC) on either side, injected on command through the agents' test-only
--test-inject-faults=FILE (common/fault_injecting_block_device.h):

Primary store:
  - a write that fails locally (ENOSPC) gets NBD ENOSPC, FUA too; its data never reaches the
    secondary (nothing unsafe is acknowledged or replicated);
  - a failed read gets NBD EIO; a failed flush gets NBD EIO;
  - the failures show in status (store_errors_total, last_store_error) and in /metrics;
  - the primary keeps serving: other requests on the same connection succeed meanwhile, and once
    the fault is cleared the pair converges to byte-identical stores.
Secondary store:
  - with writes failing on the secondary (ENOSPC: the DR site's disk is full) clients of the
    primary go on writing; the secondary refuses the batch (nothing half-applied is acked), its
    status and /metrics count the failures, the primary shows the pair out of sync with the
    written chunks flagged; once cleared, the resync brings the secondary back, stores equal;
  - with fdatasync failing on the secondary (EIO) while clients write without flushing, the
    secondary's background flush of an epoch fails: it ends the stream instead of acking the
    epoch durable, the primary keeps the epoch's chunks flagged, and once cleared the resync
    brings the secondary back, stores equal.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
EIO, ENOSPC = 5, 28
FUA = 1


def set_faults(path, text):
    """Replaces the control file; the agents re-read it within 20 ms."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    time.sleep(0.1)


def primary_faults(case, prim, sec, faults, metrics_port):
    nbd = H.RawNBD("127.0.0.1", prim.nbd_port, prim.volume)
    old = b"\x11" * CHUNK
    err, _ = nbd.request(nbd.CMD_WRITE, 0, CHUNK, data=old)
    H.check_eq(err, 0, "write before any fault")
    H.check_eq(nbd.request(nbd.CMD_FLUSH, 0, 0)[0], 0, "flush before any fault")
    H.wait_in_sync(prim, timeout=30, secondary=sec)

    H.log("primary store: writes fail with ENOSPC")
    set_faults(faults, "write ENOSPC\n")
    new = b"\x22" * CHUNK
    H.check_eq(nbd.request(nbd.CMD_WRITE, 0, CHUNK, data=new)[0], ENOSPC, "write error")
    H.check_eq(nbd.request(nbd.CMD_WRITE, 0, CHUNK, flags=FUA, data=new)[0], ENOSPC,
               "FUA write error")
    # The primary keeps serving what does not touch the fault: reads, flushes.
    err, data = nbd.request(nbd.CMD_READ, 0, CHUNK)
    H.check(err == 0 and data == old, f"read after failed writes: err {err}, old data kept "
            f"{data == old}")
    H.check_eq(nbd.request(nbd.CMD_FLUSH, 0, 0)[0], 0, "flush with only writes failing")
    st = prim.status()
    H.check(st["store_errors_total"] >= 2, f"primary store_errors_total: {H.brief(st)}")
    H.check("injected" in st.get("last_store_error", ""),
            f"primary last_store_error: {st.get('last_store_error')!r}")
    H.check(H.metric_value(metrics_port, "blockrepl_store_errors_total", volume=prim.volume) >= 2,
            "blockrepl_store_errors_total on the primary's /metrics")
    # Nothing of the failed writes may reach the secondary.
    H.wait_for(lambda: prim.status()["inflight_writes"] == 0, 10, "in-flight writes to drain",
               procs=[prim.proc, sec.proc])
    H.check(H.pread(sec.store, 0, CHUNK) == old, "the secondary got data of a failed write")

    H.log("primary store: reads and flushes fail with EIO")
    set_faults(faults, "read EIO\nflush EIO\n")
    H.check_eq(nbd.request(nbd.CMD_READ, 0, 4096)[0], EIO, "read error")
    H.check_eq(nbd.request(nbd.CMD_FLUSH, 0, 0)[0], EIO, "flush error")
    H.check_eq(nbd.request(nbd.CMD_WRITE, CHUNK, 4096, data=b"\x33" * 4096)[0], 0,
               "a write while reads and flushes fail")

    H.log("primary store: faults cleared")
    set_faults(faults, "")
    H.check_eq(nbd.request(nbd.CMD_WRITE, 2 * CHUNK, 4096, data=b"\x44" * 4096)[0], 0,
               "write after clearing")
    H.check_eq(nbd.request(nbd.CMD_FLUSH, 0, 0)[0], 0, "flush after clearing")
    nbd.close()
    st = H.wait_in_sync(prim, timeout=40, secondary=sec)
    H.log(f"primary faults: converged, {H.brief(st)}")
    H.assert_same_files(prim.store, sec.store)


def clear_and_converge(prim, sec, faults, before, after_what):
    """Clears the secondary's faults; the resync must bring it back (at least one chunk moved
    since `before`, a status of the primary), consistent, stores equal."""
    H.log(f"secondary store: faults cleared after {after_what}")
    set_faults(faults, "")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    moved = st["resynced_chunks_total"] - before["resynced_chunks_total"]
    H.log(f"after {after_what}: converged after resyncing {moved} chunks, {H.brief(st)}")
    H.check(moved >= 1, f"no chunk was resynced after {after_what}")
    H.check(sec.status()["consistent"], "secondary not consistent after the resync")
    H.assert_same_files(prim.store, sec.store)


def secondary_faults(case, prim, sec, faults, sec_metrics_port):
    before = prim.status()
    H.log("secondary store: writes fail with ENOSPC (the DR site's disk is full)")
    set_faults(faults, "write ENOSPC\n")
    nbd = H.RawNBD("127.0.0.1", prim.nbd_port, prim.volume)
    for i in range(8):
        err, _ = nbd.request(nbd.CMD_WRITE, (8 + i) * CHUNK, CHUNK, data=bytes([i + 1]) * CHUNK)
        H.check_eq(err, 0, f"client write {i} while the secondary's store fails")
    H.check_eq(nbd.request(nbd.CMD_FLUSH, 0, 0)[0], 0, "client flush while the secondary fails")
    st_sec = H.wait_for(lambda: (s := sec.status())["store_errors_total"] > 0 and s, 20,
                        "the secondary to report its store errors", procs=[prim.proc, sec.proc])
    H.check("injected" in st_sec.get("last_store_error", ""),
            f"secondary last_store_error: {st_sec.get('last_store_error')!r}")
    H.check(H.metric_value(sec_metrics_port, "blockrepl_store_errors_total", volume=sec.volume) > 0,
            "blockrepl_store_errors_total on the secondary's /metrics")
    st = H.wait_for(lambda: (s := prim.status())["sync_state"] != "in_sync"
                    and s["dirty_chunks"] > 0 and s, 20,
                    "the primary to flag the chunks the secondary could not take",
                    procs=[prim.proc, sec.proc])
    H.log(f"while the secondary fails: primary {H.brief(st)}")
    # The primary keeps serving clients, in async mode without waiting for the secondary.
    for i in range(4):
        err, _ = nbd.request(nbd.CMD_WRITE, (20 + i) * CHUNK, 4096, data=b"\x55" * 4096)
        H.check_eq(err, 0, f"client write {i} during the secondary's outage")
    err, data = nbd.request(nbd.CMD_READ, 8 * CHUNK, CHUNK)
    H.check(err == 0 and data == b"\x01" * CHUNK, "read back on the primary during the outage")
    nbd.close()

    clear_and_converge(prim, sec, faults, before, "the secondary's outage")


def secondary_flush_faults(case, prim, sec, faults):
    before = prim.status()
    errors_before = sec.status()["store_errors_total"]
    H.log("secondary store: fdatasync fails with EIO (background durability of epochs)")
    set_faults(faults, "flush EIO\n")
    nbd = H.RawNBD("127.0.0.1", prim.nbd_port, prim.volume)
    # No client flush: the epoch the primary closes when the stream goes idle is durability-only,
    # so the secondary syncs it on its flusher thread.
    for i in range(6):
        err, _ = nbd.request(nbd.CMD_WRITE, (30 + i) * CHUNK, CHUNK, data=bytes([0x60 + i]) * CHUNK)
        H.check_eq(err, 0, f"client write {i} while the secondary's flushes fail")
    H.wait_for(lambda: "background flush up to seq" in sec.proc.log_path.read_text(errors="replace"),
               20, "the secondary's background flush to fail", procs=[prim.proc, sec.proc])
    H.wait_for(lambda: sec.status()["store_errors_total"] > errors_before, 20,
               "the secondary to count the failed flush", procs=[prim.proc, sec.proc])
    st = H.wait_for(lambda: (s := prim.status())["dirty_chunks"] > 0 and s, 20,
                    "the primary to keep the epoch's chunks flagged", procs=[prim.proc, sec.proc])
    H.log(f"while the secondary's flushes fail: primary {H.brief(st)}")
    nbd.close()

    clear_and_converge(prim, sec, faults, before, "the failed background flush")
    H.check(H.pread(sec.store, 30 * CHUNK, CHUNK) == b"\x60" * CHUNK,
            "the secondary lacks a write whose epoch failed to sync")


def body(case):
    prim_faults = case.path("primary.faults")
    sec_faults = case.path("secondary.faults")
    prim_metrics, sec_metrics = H.free_port(), H.free_port()
    sec = case.secondary(volume="io", size=SIZE,
                         extra=[f"--test-inject-faults={sec_faults}",
                                f"--metrics-listen=127.0.0.1:{sec_metrics}"])
    prim = case.primary(sec.port, volume="io", size=SIZE, bitmap=f"{case.path('io.bitmap')},65536,1",
                        extra=[f"--test-inject-faults={prim_faults}",
                               f"--metrics-listen=127.0.0.1:{prim_metrics}"])
    H.wait_in_sync(prim, timeout=60, secondary=sec)
    primary_faults(case, prim, sec, prim_faults, prim_metrics)
    secondary_faults(case, prim, sec, sec_faults, sec_metrics)
    secondary_flush_faults(case, prim, sec, sec_faults)
    prim.stop()
    sec.stop()


if __name__ == "__main__":
    H.main(body)
