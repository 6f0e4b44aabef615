#!/usr/bin/python3
"""README command 1, `scripts/demo.sh`, against the build under test, on ports this test picked.

Start: the pair comes up on new sparse stores, reaches in_sync, and the script's own nbdsh
self-check passes (exit 0). Then a write through NBD reaches the replica, `demo.sh status` names
both agents, and `demo.sh stop` stops both. A second start on the same stores (no
--assume-clean this time) comes back in_sync with equal stores; a third while it runs says it is
already running. The script once checked a just-launched agent's /proc cmdline before the forked
shell had exec'd it and called a healthy primary dead (1 start in ~10); it now waits for the exec.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

DEMO = H.REPO / "scripts" / "demo.sh"


def body(case):
    H.require_tools("nbdsh")
    rng = random.Random(case.seed)
    var = case.path("var")
    nbd_port, repl_port = H.free_port(), H.free_port()
    env = dict(os.environ, DEMO_DIR=str(var), DEMO_SIZE="64M", DEMO_NBD_PORT=str(nbd_port),
               DEMO_REPL_PORT=str(repl_port), DEMO_VOLUME="demo", DEMO_SKIP_BUILD="1",
               DEMO_BIN=str(H.BIN))
    primary_admin = var / "primary.sock"

    def demo(*args, timeout=150):
        return H.run([str(DEMO), *args], timeout=timeout, check_rc=False, env=env)

    def started_pids():
        pids = []
        for name in ("primary", "secondary"):
            f = var / f"{name}.pid"
            if f.exists():
                pids.append(int(f.read_text().strip()))
        return pids

    try:
        r = demo()
        H.check(r.returncode == 0, f"demo.sh start: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        H.check("both stores are identical" in r.stdout, f"no self-check line: {r.stdout!r}")
        H.check(f"nbd://127.0.0.1:{nbd_port}/demo" in r.stdout, f"no NBD URI: {r.stdout!r}")
        H.check(len(started_pids()) == 2, "demo.sh wrote no pid files")

        h = H.nbd_connect(f"nbd://127.0.0.1:{nbd_port}/demo")
        for _ in range(8):
            h.pwrite(rng.randbytes(64 * H.KiB), rng.randrange(0, 64 * H.MiB // H.KiB - 64) * H.KiB)
        h.flush()
        h.shutdown()
        H.wait_for(lambda: H.in_sync(H.status(primary_admin)), 30, "in_sync after the writes")
        H.assert_same_files(var / "primary.img", var / "secondary.img")

        r = demo("status")
        H.check(r.returncode == 0 and "== repl-primary (pid" in r.stdout
                and "== repl-secondary (pid" in r.stdout, f"demo.sh status: {r.stdout!r}")
        pids = started_pids()
        r = demo("stop")
        H.check(r.returncode == 0, f"demo.sh stop: exit {r.returncode} {r.stderr!r}")
        for pid in pids:
            H.check(not os.path.exists(f"/proc/{pid}"), f"pid {pid} still runs after stop")

        # Again on the stores it left: a restart, not a new pair.
        r = demo()
        H.check(r.returncode == 0, f"demo.sh restart: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        H.check("both stores are identical" in r.stdout, f"restart self-check: {r.stdout!r}")
        r = demo()
        H.check(r.returncode == 0 and "already running" in r.stdout,
                f"demo.sh while running: exit {r.returncode} {r.stdout!r}")
    finally:
        pids = started_pids()
        demo("stop", timeout=60)
        for pid in pids:  # by PID, whatever the script did, if it is still one of ours
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"repl-" in f.read()
                if ours:
                    os.kill(pid, 9)
            except (FileNotFoundError, ProcessLookupError):
                pass


if __name__ == "__main__":
    H.main(body)
