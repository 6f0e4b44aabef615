#!/usr/bin/python3
"""Bad input is refused precisely and harms nothing.

- NBD: a wrong export name is refused (nbdinfo fails; NBD_OPT_GO gets an error reply).
- NBD raw requests: unknown flag -> EINVAL, unknown command -> EINVAL, read past the end ->
  EINVAL, write past the end -> ENOSPC (payload consumed, connection still usable), a 256 MiB
  write is refused (error reply or close) without being buffered (peak RSS), garbage
  request magic closes the connection. The primary still serves and replicates afterwards.
- Replication handshake: a secondary with another volume name, and one with another size, is
  refused; the primary's last_error names both values, it stays "connecting", and the
  secondary's store is untouched.
- replctl: a missing admin socket exits 1 with a one-line error; a usage error exits 2.
"""
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
EINVAL, ENOSPC = 22, 28


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise H.Fail(f"no VmHWM for pid {pid}")


def nbd_checks(case, prim, sec):
    # Wrong export name.
    r = H.run(["nbdinfo", f"nbd://127.0.0.1:{prim.nbd_port}/no-such-volume"], check_rc=False,
              timeout=20)
    H.check(r.returncode != 0, f"nbdinfo accepted a wrong export name: {r.stdout}")
    H.log(f"wrong export name refused by nbdinfo: {r.stderr.strip().splitlines()[-1:]}")
    try:
        H.RawNBD("127.0.0.1", prim.nbd_port, "no-such-volume").close()
        raise H.Fail("NBD_OPT_GO with a wrong export name succeeded")
    except (OSError, EOFError) as e:
        H.log(f"raw GO with wrong name refused: {e}")
    r = H.run(["nbdinfo", "--size", prim.uri], timeout=20)
    H.check_eq(int(r.stdout.strip()), SIZE, "nbdinfo --size")

    c = H.RawNBD("127.0.0.1", prim.nbd_port, prim.volume)
    H.check_eq(c.size, SIZE, "export size from NBD_OPT_GO")
    err, _ = c.request(c.CMD_READ, 0, 4096, flags=0x4000)
    H.check_eq(err, EINVAL, "error for a read with an unknown flag")
    err, _ = c.request(c.CMD_FLUSH, 0, 0, flags=0x8000)
    H.check_eq(err, EINVAL, "error for a flush with an unknown flag")
    err, _ = c.request(0x77, 0, 0)
    H.check_eq(err, EINVAL, "error for an unknown command type")
    err, _ = c.request(c.CMD_READ, SIZE - 512, 4096)
    H.check_eq(err, EINVAL, "error for a read crossing the end")
    err, _ = c.request(c.CMD_READ, SIZE + 4096, 4096)
    H.check_eq(err, EINVAL, "error for a read past the end")
    err, _ = c.request(c.CMD_WRITE, SIZE - 512, 4096, data=b"\xee" * 4096)
    H.check_eq(err, ENOSPC, "error for a write crossing the end")
    err, _ = c.request(c.CMD_TRIM, SIZE, 65536)
    H.check_eq(err, EINVAL, "error for a trim past the end")
    # The connection is still in step: a good write and read-back on it.
    err, _ = c.request(c.CMD_WRITE, 4096, 4096, data=b"\x42" * 4096)
    H.check_eq(err, 0, "error for a good write after refused requests")
    err, data = c.request(c.CMD_READ, 4096, 4096)
    H.check(err == 0 and data == b"\x42" * 4096, f"read-back failed: err {err}")
    # Oversized write: 256 MiB (8x the usual 32 MiB maximum payload), payload sent. It must be
    # refused (an error reply, or closing the connection) without buffering it: the primary's
    # peak RSS must not grow by anything near 256 MiB.
    hwm_before = vm_hwm(prim.proc.pid)
    c.send_request(c.CMD_WRITE, 0, 256 * H.MiB)
    closed = False
    c.sock.settimeout(10)
    try:
        chunk = bytes(H.MiB)
        for _ in range(256):
            c.sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
        H.log("oversized write: connection closed while sending the payload")
    if not closed:
        try:
            err, _, _ = c.read_reply()
            H.check(err != 0, "a 256 MiB write got a success reply")
            H.log(f"oversized write refused with error {err}")
            err, data = c.request(c.CMD_READ, 4096, 4096)
            H.check(err == 0 and data == b"\x42" * 4096,
                    "connection unusable after the refused oversized write")
        except (EOFError, ConnectionResetError):
            H.log("oversized write: connection closed")
        except TimeoutError:
            raise H.Fail("oversized write (256 MiB): no reply and no close within 10 s after "
                         "the payload was sent")
    c.sock.close()
    H.check(H.pread(prim.store, 0, 4096) == bytes(4096),
            "the refused oversized write reached the store")
    hwm_after = vm_hwm(prim.proc.pid)
    H.log(f"primary peak RSS {hwm_before >> 20} MiB -> {hwm_after >> 20} MiB")
    H.check(hwm_after - hwm_before < 128 * H.MiB,
            f"the primary's peak RSS grew by {(hwm_after - hwm_before) >> 20} MiB on a refused "
            f"256 MiB write: it was buffered")
    # Garbage magic closes the connection.
    g = H.RawNBD("127.0.0.1", prim.nbd_port, prim.volume)
    g.sock.sendall(bytes(range(28)))
    H.check(g.wait_closed(5), "garbage request magic did not close the connection within 5 s")
    g.sock.close()
    H.check(prim.alive() and sec.alive(), "an agent died after malformed requests")

    # Still serving and replicating.
    rng = random.Random(case.seed)
    h = H.nbd_connect(prim.uri)
    data = rng.randbytes(H.MiB)
    h.pwrite(data, 8 * H.MiB)
    H.check(h.pread(H.MiB, 8 * H.MiB) == data, "read-back after malformed requests failed")
    h.flush()
    h.shutdown()
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.assert_same_files(prim.store, sec.store)


def refused_secondary(case, label, prim_volume, sec_volume, prim_size, sec_size, values):
    sec_store = case.path(f"{label}-secondary.img")
    H.fill_random(sec_store, sec_size, case.seed + 7)
    digest = H.file_hash(sec_store)
    mtime = os.stat(sec_store).st_mtime_ns
    sec = case.secondary(volume=sec_volume, store=sec_store, name=f"{label}-secondary")
    prim = case.primary(sec.port, volume=prim_volume, size=prim_size, name=f"{label}-primary")

    def refused():
        st = prim.status()
        return st if st.get("last_error") else None
    st = H.wait_for(refused, 20, f"{label}: the primary to report the refusal in last_error",
                    procs=[prim.proc, sec.proc])
    err = st["last_error"]
    H.log(f"{label}: last_error = {err!r}; status {H.brief(st)}")
    for alternatives in values:
        H.check(any(re.search(a, err) for a in alternatives),
                f"{label}: last_error {err!r} does not name {alternatives[0]!r}")
    # Observe it for 3 s of retries: it must stay refused and write nothing.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        st = prim.status()
        H.check(st["connection"] != "connected",
                f"{label}: the primary connected to a mismatched secondary: {st}")
        H.check(st["sync_state"] != "in_sync", f"{label}: in_sync with a mismatched secondary")
        time.sleep(0.2)
    H.check_eq(st["connection"], "connecting", f"{label}: connection state")
    # Some writes on the primary meanwhile: they must not reach the refused secondary.
    h = H.nbd_connect(prim.uri)
    h.pwrite(b"\x99" * 65536, 0)
    h.flush()
    h.shutdown()
    prim.stop()
    sec.stop()
    H.check_eq(os.path.getsize(sec_store), sec_size, f"{label}: secondary store size")
    H.check(H.file_hash(sec_store) == digest, f"{label}: the refused secondary's store changed")
    H.check_eq(os.stat(sec_store).st_mtime_ns, mtime, f"{label}: secondary store mtime")


def replctl_checks(case):
    r = H.replctl(case.path("no-such.admin"), "status")
    out = (r.stdout + r.stderr).strip()
    H.check_eq(r.returncode, 1, f"replctl exit code for a missing socket (output {out!r})")
    H.check(out and len(out.splitlines()) == 1,
            f"replctl error for a missing socket is not one line: {out!r}")
    r = H.replctl(case.path("no-such.admin"), "status", "--json")
    H.check_eq(r.returncode, 1, "replctl --json exit code for a missing socket")
    r = H.replctl(case.path("no-such.admin"), "no-such-command")
    H.check_eq(r.returncode, 2, f"replctl exit code for a usage error ({r.stderr.strip()!r})")
    H.log(f"replctl: missing socket -> exit 1 {out!r}; usage error -> exit 2")


def body(case):
    H.require_nbd_module()
    H.require_tools("nbdinfo")
    replctl_checks(case)

    prim, sec = case.pair(size=SIZE, volume="good")
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    nbd_checks(case, prim, sec)
    prim.stop()
    sec.stop()

    refused_secondary(case, "name", "alpha-vol", "bravo-vol", SIZE, SIZE,
                      [["alpha-vol"], ["bravo-vol"]])
    big, small = 64 * H.MiB, 32 * H.MiB
    refused_secondary(case, "size", "samevol", "samevol", big, small,
                      [[str(big), r"64 ?Mi?B?\b"], [str(small), r"32 ?Mi?B?\b"]])


if __name__ == "__main__":
    H.main(body, default_seed=666)
