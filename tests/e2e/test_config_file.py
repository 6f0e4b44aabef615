#!/usr/bin/python3
"""Configuration files: one file per agent, several volumes per agent, same contract as flags.

1. A secondary and a primary each started with only `--config FILE` serving two volumes
   ("alpha" 16 MiB async, "beta" 32 MiB --sync, bitmaps with 64 KiB chunks): `replctl status
   --json` on each lists both volumes with their role and mode; random writes to both exports
   through NBD; both pairs reach in_sync; each primary store equals its secondary store byte for
   byte; `replctl verify --volume beta` finds them equal; per-volume metrics
   (nbd_requests_total{volume=...}) count each export's writes separately.
2. The same primary restarted from the same file resyncs nothing (clean bitmaps).
3. Bad files exit 2 with one line naming the file (and line): an unknown key, an agent-wide key
   inside a volume section, a duplicate volume, two volumes on one store, no volume section,
   a missing file, --config mixed with other flags; nothing is created.
4. `--check-config` accepts the shipped examples (deploy/examples/site-a.primary.conf,
   site-b.secondary.conf: "OK, 2 volume(s): db, logs", exit 0, nothing opened) and refuses a bad
   file with exit 2.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

VOLUMES = {"alpha": 16 * H.MiB, "beta": 32 * H.MiB}


def body(case):
    rng = random.Random(case.seed)
    d = case.dir
    rport, nbd_port, mport = H.free_port(), H.free_port(), H.free_port()
    sec_conf = d / "secondary.conf"
    sec_conf.write_text(
        "# test secondary\n"
        f"listen = 127.0.0.1:{rport}\nadmin-socket = {d}/sec.sock\n\n"
        + "".join(f"[volume {v}]\nstore = {d}/sec-{v}.img\nsize = {n}\n\n"
                  for v, n in VOLUMES.items()))
    prim_conf = d / "primary.conf"
    prim_conf.write_text(
        "; test primary\n"
        f"admin-socket = {d}/prim.sock\nnbd-listen = 127.0.0.1:{nbd_port}\n"
        f"metrics-listen = 127.0.0.1:{mport}\n\n"
        f"[volume alpha]\nstore = {d}/prim-alpha.img\nsize = 16M\n"
        f"secondary = 127.0.0.1:{rport}\nbitmap = {d}/alpha.bm,65536,1\nasync = 64\n\n"
        f"[volume beta]\nstore = {d}/prim-beta.img\nsize = 32M\n"
        f"secondary = 127.0.0.1:{rport}\nbitmap = {d}/beta.bm,65536,1\nsync = true\n")
    sec = H.Agent(case, "secondary", "secondary", [H.BIN / "repl-secondary", f"--config={sec_conf}"],
                  d / "sec.sock", "alpha", d / "sec-alpha.img", port=rport)
    case.agents.append(sec)
    sec.start()
    prim = H.Agent(case, "primary", "primary", [H.BIN / "repl-primary", "--config", prim_conf],
                   d / "prim.sock", "alpha", d / "prim-alpha.img", nbd_port=nbd_port)
    case.agents.append(prim)
    prim.start()

    def statuses(sock):
        r = H.replctl(sock, "status", "--json")
        H.check_eq(r.returncode, 0, f"replctl status on {sock}")
        return {v["name"]: v for v in json.loads(r.stdout)["volumes"]}

    sp = statuses(prim.admin)
    H.check_eq(sorted(sp), sorted(VOLUMES), "primary volumes")
    H.check_eq((sp["alpha"]["mode"], sp["beta"]["mode"]), ("async", "sync"), "modes")
    H.check_eq(sp["alpha"]["max_inflight_writes"], 64, "alpha window from the file")
    H.check_eq(sorted(statuses(sec.admin)), sorted(VOLUMES), "secondary volumes")

    writes = {}
    for v, size in VOLUMES.items():
        h = H.nbd_connect(f"nbd://127.0.0.1:{nbd_port}/{v}")
        H.check_eq(h.get_size(), size, f"export {v} size")
        writes[v] = rng.randrange(50, 120)
        for _ in range(writes[v]):
            n = rng.choice([4096, 65536])
            h.pwrite(rng.randbytes(n), rng.randrange(0, size - n, 4096))
        h.flush()
        h.shutdown()

    def all_in_sync():
        st = statuses(prim.admin)
        return all(H.in_sync(s) for s in st.values()) and st

    H.wait_for(all_in_sync, 60, "both volumes in sync", procs=[prim.proc, sec.proc])
    for v in VOLUMES:
        H.assert_same_files(d / f"prim-{v}.img", d / f"sec-{v}.img")
        H.check_eq(H.metric_value(mport, "blockrepl_nbd_requests_total", volume=v,
                                  command="write"),
                   writes[v], f"nbd writes counted for {v}")
    r = H.replctl(prim.admin, "verify", "--volume", "beta", "--json", timeout=60)
    H.check_eq(r.returncode, 0, f"verify beta: {r.stderr}")
    H.check_eq(json.loads(r.stdout)["chunks_compared"], 512, "beta chunks verified")
    one = H.replctl(prim.admin, "verify")
    H.check(one.returncode == 1 and "name one with --volume" in one.stderr,
            f"verify without --volume on a two-volume agent: {one.returncode} {one.stderr!r}")

    # ---- 2. restart from the same file: nothing to resync --------------------------------------
    before = {v: s["resynced_bytes_total"] for v, s in statuses(prim.admin).items()}
    prim.stop()
    prim.restart()
    st = H.wait_for(all_in_sync, 60, "both volumes in sync after restart", procs=[prim.proc])
    for v in VOLUMES:
        H.check_eq(st[v]["resynced_bytes_total"], 0, f"{v}: nothing resynced after a clean restart")
    H.log(f"before restart resynced {before}; after: 0 each")

    # ---- 3. bad files ---------------------------------------------------------------------------
    def refused(name, text, needle, extra=()):
        conf = d / name
        if text is not None:
            conf.write_text(text)
        store = d / f"{name}.img"
        r = H.run([H.BIN / "repl-primary", f"--config={conf}", *extra], check_rc=False, timeout=20)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        H.check(r.returncode == 2 and len(lines) == 1 and needle in lines[0],
                f"{name}: exit {r.returncode}, stderr {r.stderr!r} (want 2 and {needle!r})")
        H.check(not store.exists(), f"{name}: nothing created")
        H.log(f"{name}: {lines[0]}")

    head = f"admin-socket = {d}/x.sock\nnbd-listen = 127.0.0.1:1\n"
    vol = f"store = {d}/%s.img\nsize = 1M\nsecondary = 127.0.0.1:1\n"
    refused("unknown.conf", head + "[volume v]\n" + vol % "unknown.conf" + "colour = blue\n",
            "unknown.conf:7: unknown key 'colour'")
    refused("agentwide.conf", head + "[volume v]\n" + vol % "agentwide.conf"
            + "metrics-listen = 127.0.0.1:2\n", "'metrics-listen' is agent-wide")
    refused("dup.conf", head + "[volume v]\n" + vol % "dup.conf" + "[volume v]\n",
            "dup.conf:7: volume 'v' appears twice")
    refused("samestore.conf", head + "[volume v]\n" + vol % "samestore.conf" + "[volume w]\n"
            + vol % "samestore.conf", "use the same store")
    refused("empty.conf", head, "no [volume NAME] section")
    refused("missing.conf", None, "cannot read config file")
    refused("mixed.conf", head, "takes no other arguments", extra=["--sync"])

    # ---- 4. --check-config on the shipped examples -------------------------------------------
    examples = H.Path(__file__).resolve().parents[2] / "deploy" / "examples"
    for binary, name in [("repl-primary", "site-a.primary.conf"),
                         ("repl-secondary", "site-b.secondary.conf")]:
        r = H.run([H.BIN / binary, "--check-config", examples / name], check_rc=False)
        H.check(r.returncode == 0 and "OK, 2 volume(s): db, logs" in r.stdout,
                f"{binary} --check-config {name}: exit {r.returncode} {r.stdout!r} {r.stderr!r}")
    r = H.run([H.BIN / "repl-primary", f"--check-config={d}/unknown.conf"], check_rc=False)
    H.check_eq(r.returncode, 2, "--check-config of a bad file")


if __name__ == "__main__":
    H.main(body)
