#!/usr/bin/python3
"""Every replctl command against running agents: output, --json, exit codes, one-line errors.

A pair (64 MiB, --bitmap=F,65536,1) syncs random data.
1. status/detail/watch: `status --json` and `detail --json` parse and name the volume and role;
   `detail` prints "Role : primary" lines; `watch --count 2` prints two blocks on a pipe and
   `watch --json --count 2` two JSON lines. `status --volume nope` exits 1 with one line.
2. verify: on the idle pair exit 0, "the stores are equal", --json chunks_compared 1024 and
   chunks_differing 0. With a random-write load running, verify still finds nothing (both sides
   are checksummed at the same point of the stream). Two chunks of the secondary's store are
   corrupted behind its back: verify exits 3 and names exactly those chunks; `verify --repair`
   flags them; the pair resyncs them; the stores compare equal and verify exits 0 again.
3. disconnect/connect on the primary: `disconnect` exits 0, connection "disconnected",
   disconnected_by_operator true, and it stays down (no reconnect within 1.5 s); D written
   chunks are dirty; `verify` now exits 1 with one line saying it is not connected; `connect`
   exits 0 once connected; `wait` exits 1 at once while the volume is held down, and after
   `connect` returns with the primary in sync (its --json status says so); the resync moved
   exactly D chunks; stores equal.
4. disconnect/connect on the secondary: the primary loses the stream and shows the
   secondary's reason in last_error (`wait --timeout 0.5` on the primary exits 1 with one line
   naming it); `connect` on the secondary lets it back; stores equal.
5. Errors: a socket nobody serves exits 1 with one line "no agent answers"; `verify` on the
   secondary exits 1 saying it runs on the primary; bad usage exits 2; the admin sockets are
   mode 0600.
"""
import json
import os
import random
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB


def ctl(agent_or_socket, *args, timeout=60):
    sock = getattr(agent_or_socket, "admin", agent_or_socket)
    r = H.replctl(sock, *args, timeout=timeout)
    H.log(f"$ replctl {' '.join(args)} -> exit {r.returncode}"
          + (f"; stderr: {r.stderr.strip()}" if r.stderr.strip() else ""))
    return r


def one_line_error(r, code, needle, what):
    H.check_eq(r.returncode, code, f"{what}: exit code")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    H.check(len(lines) == 1 and needle in lines[0] and lines[0].startswith("replctl: "),
            f"{what}: one line with {needle!r}, got {r.stderr!r}")


def verify_json(prim, *extra, expect=0):
    r = ctl(prim, "verify", "--json", *extra, timeout=120)
    H.check_eq(r.returncode, expect, f"verify {' '.join(extra)} exit code ({r.stdout}{r.stderr})")
    return json.loads(r.stdout)


def body(case):
    rng = random.Random(case.seed)
    prim, sec = case.pair(size="64M", volume="ops", bitmap=f"{case.path('ops.bm')},65536,1")
    H.wait_in_sync(prim, secondary=sec)
    h = H.nbd_connect(prim.uri)
    for c in rng.sample(range(SIZE // CHUNK), 200):
        h.pwrite(rng.randbytes(CHUNK), c * CHUNK)
    h.flush()
    h.shutdown()
    H.wait_in_sync(prim, secondary=sec)

    # ---- 1. status / detail / watch -----------------------------------------------------------
    for agent, role in [(prim, "primary"), (sec, "secondary")]:
        doc = json.loads(ctl(agent, "status", "--json").stdout)
        H.check_eq([(v["name"], v["role"]) for v in doc["volumes"]], [("ops", role)], "status --json")
        r = ctl(agent, "detail")
        H.check_eq(r.returncode, 0, "detail exit")
        H.check(f"Role : {role}" in r.stdout and "Volume : ops" in r.stdout,
                f"detail output:\n{r.stdout}")
        d = json.loads(ctl(agent, "detail", "--json").stdout)
        H.check_eq((d["name"], d["role"]), ("ops", role), "detail --json")
    r = ctl(prim, "watch", "--count", "2", "--interval", "0.2")
    H.check_eq(r.returncode, 0, "watch exit")
    H.check_eq(r.stdout.count("Every 0.2s: replctl status"), 2, "watch blocks")
    r = ctl(prim, "watch", "--json", "--count", "2", "--interval", "0.2")
    lines = r.stdout.splitlines()
    H.check_eq(len(lines), 2, "watch --json lines")
    H.check_eq(json.loads(lines[1])["volumes"][0]["name"], "ops", "watch --json volume")
    one_line_error(ctl(prim, "status", "--volume", "nope"), 1, "no volume named 'nope'",
                   "status of an unknown volume")
    one_line_error(ctl(prim, "detail", "--volume", "nope"), 1, "no volume named 'nope'",
                   "detail of an unknown volume")

    # ---- 2. verify ------------------------------------------------------------------------------
    r = ctl(prim, "verify", timeout=120)
    H.check_eq(r.returncode, 0, f"verify of an equal pair ({r.stdout})")
    H.check("the stores are equal" in r.stdout, f"verify output: {r.stdout!r}")
    rep = verify_json(prim)
    H.check_eq((rep["chunks_compared"], rep["chunks_differing"], rep["bytes_compared"]),
               (SIZE // CHUNK, 0, SIZE), "verify --json counts")

    load = H.Load(case, prim.uri, SIZE, case.seed + 1, qd=16, min_bs=4 * H.KiB, max_bs=64 * H.KiB)
    load.wait_progress(200, procs=[prim.proc, sec.proc])
    for _ in range(3):
        rep = verify_json(prim)
        H.check_eq(rep["chunks_differing"], 0, "verify under a write load finds nothing")
    load.wait_progress(100, procs=[prim.proc, sec.proc])
    load.stop()
    H.wait_in_sync(prim, secondary=sec)

    bad = sorted(rng.sample(range(SIZE // CHUNK), 2))
    with open(sec.store, "r+b") as f:
        for c in bad:
            f.seek(c * CHUNK + rng.randrange(0, CHUNK - 512, 512))
            f.write(rng.randbytes(512))
            f.flush()
            os.fsync(f.fileno())
    H.log(f"corrupted secondary chunks {bad} behind its back")
    rep = verify_json(prim, expect=3)
    H.check_eq(sorted(int(c) for c in rep["differing_chunks"]), bad, "verify names the chunks")
    r = ctl(prim, "verify", timeout=120)
    H.check_eq(r.returncode, 3, "verify (text) exit code with differences")
    for c in bad:
        H.check(f"chunk {c} " in r.stdout, f"text report names chunk {c}: {r.stdout!r}")
    rep = verify_json(prim, "--repair", expect=3)
    H.check_eq(rep["chunks_marked"], 2, "verify --repair flags both chunks")
    st = H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    verify_json(prim, expect=0)

    # ---- 3. disconnect / connect on the primary -----------------------------------------------
    r = ctl(prim, "disconnect")
    H.check_eq(r.returncode, 0, f"disconnect exit ({r.stdout})")
    time.sleep(1.5)
    st = prim.status()
    H.check_eq((st["connection"], st["disconnected_by_operator"]), ("disconnected", True),
               "stays disconnected")
    resynced0 = st["resynced_chunks_total"]
    d = 23
    h = H.nbd_connect(prim.uri)
    for c in rng.sample(range(SIZE // CHUNK), d):
        h.pwrite(rng.randbytes(4096), c * CHUNK)
    h.flush()
    h.shutdown()
    H.check_eq(prim.status()["dirty_chunks"], d, "dirty chunks while disconnected")
    one_line_error(ctl(prim, "verify"), 1, "not connected", "verify on a disconnected pair")
    one_line_error(ctl(prim, "wait", "--timeout", "30"), 1, "disconnected by the operator",
                   "wait on a volume held down (fails at once, not after 30 s)")
    r = ctl(prim, "connect", "--json", "--timeout", "0")
    H.check_eq(r.returncode, 0, f"connect exit ({r.stderr})")
    # `wait` returns once the resync is over: nothing dirty, nothing in flight, right then.
    r = ctl(prim, "wait", "--timeout", "60", "--json")
    H.check_eq(r.returncode, 0, f"wait exit ({r.stderr})")
    st = json.loads(r.stdout)
    H.check(H.in_sync(st), f"wait --json: in sync when it returns: {H.brief(st)}")
    H.check_eq(st["resynced_chunks_total"] - resynced0, d, "chunks resynced after connect")
    H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)

    # ---- 4. disconnect / connect on the secondary ---------------------------------------------
    H.check_eq(ctl(sec, "disconnect").returncode, 0, "disconnect on the secondary")
    H.wait_for(lambda: "operator disconnected" in prim.status()["last_error"], 20,
               "primary shows the secondary's reason")
    H.check(prim.status()["connection"] != "connected", "primary not connected")
    one_line_error(ctl(prim, "wait", "--timeout", "0.5"), 1, "operator disconnected",
                   "wait times out naming the reason")
    h = H.nbd_connect(prim.uri)
    h.pwrite(rng.randbytes(4096), 5 * CHUNK)
    h.flush()
    h.shutdown()
    r = ctl(sec, "connect", "--timeout", "40")
    H.check_eq(r.returncode, 0, f"connect on the secondary ({r.stderr})")
    H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)

    # ---- 5. errors ------------------------------------------------------------------------------
    one_line_error(ctl(case.path("nobody.sock"), "status"), 1, "no agent answers",
                   "status with no agent")
    one_line_error(ctl(case.path("nobody.sock"), "verify"), 1, "no agent answers",
                   "verify with no agent")
    one_line_error(ctl(sec, "verify"), 1, "verify runs on the primary", "verify on the secondary")
    H.check_eq(ctl(prim, "verify", "--offset", "lots").returncode, 2, "bad usage exit code")
    H.check_eq(ctl(prim, "frobnicate").returncode, 2, "unknown command exit code")
    for agent in (prim, sec):
        mode = stat.S_IMODE(os.stat(agent.admin).st_mode)
        H.check_eq(oct(mode), oct(0o600), f"{agent.name} admin socket mode")


if __name__ == "__main__":
    H.main(body)
