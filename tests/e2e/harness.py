"""Shared machinery for blockrepl's end-to-end tests.

Every e2e test is a standalone script run by /usr/bin/python3 (Debian's interpreter, which has
libnbd's `nbd` module). It calls `harness.main(body)`, where `body(case)` drives real
`repl-secondary` / `repl-primary` processes and real NBD clients. Exit codes: 0 pass, 1 fail,
77 skip (a tool is missing). Every process a test starts is tracked here and stopped by PID
(SIGTERM, then SIGKILL) in a `finally`, at exit, and (through PR_SET_PDEATHSIG) even if the test
interpreter itself is killed. Synchronisation is always "poll a condition with a deadline".

Environment:
  BLOCKREPL_BIN   directory with the binaries (default: <repo>/build/bin)
  BLOCKREPL_SEED  overrides each test's default seed (printed at start)
  BLOCKREPL_KEEP  keep the temp dir even when the test passes
  BLOCKREPL_DEADLINE  seconds before the test aborts itself with a log dump (default 85)

Also usable as a load generator process: `python3 harness.py load URI ...` (see `_load_main`).
"""

import atexit
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_bin_env = os.environ.get("BLOCKREPL_BIN")
BIN = Path(_bin_env) if _bin_env else REPO / "build" / "bin"
if not BIN.is_absolute():
    BIN = REPO / BIN

# Debian's nbdsh/qemu-io/python-nbd live in /usr/bin; another python3 may shadow it on PATH.
os.environ["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin:" + os.environ.get("PATH", "")

T0 = time.monotonic()
KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB


class Skip(Exception):
    """Raised to end the test with exit code 77 (a required tool is missing)."""


class Fail(AssertionError):
    """A test assertion failed."""


def log(msg):
    print(f"[{time.monotonic() - T0:7.2f}s] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Fail(f"{what}: expected {expected!r}, got {actual!r}")


# ----------------------------------------------------------------------------------------------
# tools


def require_tools(*names):
    """Skip (exit 77) when a command-line tool is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise Skip(f"missing tool(s): {', '.join(missing)} (run scripts/install-deps.sh)")


def require_nbd_module():
    try:
        import nbd
    except ImportError as e:
        raise Skip(f"python module 'nbd' not importable by {sys.executable}: {e} "
                   "(install python3-libnbd and run with /usr/bin/python3)")
    return nbd


_BINARIES = ("repl-primary", "repl-secondary", "replctl")


def binary_mtimes():
    return {b: os.stat(BIN / b).st_mtime_ns if (BIN / b).exists() else None for b in _BINARIES}


def require_binaries():
    """The binaries are what we test: missing ones are a failure, not a skip."""
    for b in _BINARIES:
        p = BIN / b
        if not os.access(p, os.X_OK):
            raise Fail(f"binary {p} not found or not executable (build first: scripts/build.sh;"
                       f" or set BLOCKREPL_BIN)")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    """True when something listens on 127.0.0.1:port (read /proc, do not connect)."""
    want = f"{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == "0A" and local.rsplit(":", 1)[1] == want:
                        return True
        except FileNotFoundError:
            pass
    return False


def parse_size(s):
    if isinstance(s, int):
        return s
    s = s.strip()
    mult = {"K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}
    if s and s[-1].upper() in mult:
        return int(s[:-1]) * mult[s[-1].upper()]
    return int(s)


def run(argv, timeout=60, check_rc=True, input=None, quiet=False, env=None):
    """Run a short command; log it; return CompletedProcess (text). `env`: the whole environment
    (default: this process's)."""
    argv = [str(a) for a in argv]
    if not quiet:
        log("$ " + " ".join(argv))
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL if input is None else None,
                           input=input, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise Fail(f"command timed out after {timeout}s: {' '.join(argv)}\n"
                   f"stdout: {e.stdout}\nstderr: {e.stderr}")
    if check_rc and r.returncode != 0:
        raise Fail(f"command failed (exit {r.returncode}): {' '.join(argv)}\n"
                   f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


# ----------------------------------------------------------------------------------------------
# processes

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # Die with the test interpreter even if it is SIGKILLed (e.g. by a CTest timeout).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_ALL_PROCS = []


class Proc:
    """One child process, its output appended to LOGDIR/NAME.log. Stopped by PID only."""

    def __init__(self, name, argv, logdir, new_session=False, env=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(logdir) / f"{name}.log"
        self.new_session = new_session
        with open(self.log_path, "ab") as f:
            f.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            f.flush()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=new_session,
                                          preexec_fn=_child_setup)
        self.pid = self.popen.pid
        _ALL_PROCS.append(self)
        log(f"started {name} pid {self.pid}: {' '.join(self.argv)}")

    def alive(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def _signal(self, sig):
        try:
            if self.new_session:
                os.killpg(self.pid, sig)  # the whole group: socat and its forked pipelines
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status (negative = signal)."""
        if not self.alive():
            if self.new_session:
                self._signal(signal.SIGKILL)  # leftover group members
            return self.popen.returncode
        self._signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            log(f"{self.name} pid {self.pid} ignored SIGTERM for {timeout}s: SIGKILL")
            self._signal(signal.SIGKILL)
            rc = self.wait(10)
        elif self.new_session:
            self._signal(signal.SIGKILL)
        log(f"stopped {self.name} pid {self.pid}: exit {rc}")
        return rc

    def kill9(self):
        """`kill -9` (the whole group for a session leader)."""
        self._signal(signal.SIGKILL)
        rc = self.wait(10)
        log(f"killed -9 {self.name} pid {self.pid}: exit {rc}")
        return rc

    def tail(self, n=80):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])


def _cleanup_all():
    for p in reversed(_ALL_PROCS):
        try:
            if p.alive() or p.new_session:
                p.stop(timeout=5)
        except Exception as e:  # keep going: every process must be stopped
            print(f"cleanup of {p.name} pid {p.pid} failed: {e}", file=sys.stderr)


atexit.register(_cleanup_all)

# What ASan, UBSan and TSan print when they find something (sanitizer builds: build-asan/,
# build-tsan/). A report in any process's log fails the test even when the process went on or
# exited 0, e.g. a TSan race report or a UBSan error in a process the test then killed.
_SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                               r"WARNING: ThreadSanitizer|runtime error: ")


def sanitizer_reports():
    """Lines of sanitizer reports found in the logs of every process started so far."""
    found = []
    for p in _ALL_PROCS:
        try:
            text = Path(p.log_path).read_text(errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if _SANITIZER_REPORT.search(line):
                found.append(f"{p.name} ({p.log_path}): {line.strip()}")
    return found


# ----------------------------------------------------------------------------------------------
# replctl / status


class StatusError(Exception):
    pass


def replctl(admin_socket, *args, timeout=10):
    return subprocess.run([str(BIN / "replctl"), f"--admin-socket={admin_socket}", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def ctl(agent, *args, timeout=30):
    """`replctl --admin-socket=<agent's> ARGS` that must succeed; returns its stdout."""
    r = replctl(agent.admin, *args, timeout=timeout)
    check(r.returncode == 0, f"replctl {' '.join(args)} on {agent.name}: exit "
          f"{r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def read_meta(path):
    """A secondary's metadata file (KEY=VALUE lines) as a dict of strings."""
    meta = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def metric_value(port, name, **labels):
    """The value of the first sample of metric `name` on 127.0.0.1:PORT/metrics carrying every
    label=value of `labels`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    raise Fail(f"metric {name} with {labels} not in the scrape of port {port}")


def status(admin_socket, volume=None):
    """The volume dict from `replctl status --json` (the only volume, or the named one)."""
    try:
        r = replctl(admin_socket, "status", "--json")
    except subprocess.TimeoutExpired:
        raise StatusError(f"replctl status timed out ({admin_socket})")
    if r.returncode != 0:
        raise StatusError(f"replctl exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise Fail(f"replctl status --json printed invalid JSON ({e}): {r.stdout!r}")
    vols = doc.get("volumes")
    if not isinstance(vols, list) or not vols:
        raise Fail(f"replctl status --json has no volumes: {r.stdout!r}")
    if volume is None:
        if len(vols) != 1:
            raise Fail(f"expected one volume, got {len(vols)}: {r.stdout!r}")
        return vols[0]
    for v in vols:
        if v.get("name") == volume:
            return v
    raise Fail(f"volume {volume!r} not in status: {r.stdout!r}")


def wait_for(pred, timeout, what, interval=0.05, procs=(), ignore=(StatusError,)):
    """Poll `pred()` until it returns a truthy value (returned) or fail after `timeout`.
    Fails at once if one of `procs` has exited. Exceptions in `ignore` count as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for p in procs:
            if not p.alive():
                raise Fail(f"{p.name} (pid {p.pid}) exited with {p.returncode} while waiting "
                           f"for: {what}")
        try:
            v = pred()
            if v:
                return v
            last = v
        except ignore as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise Fail(f"timed out after {timeout}s waiting for: {what} (last: {last!r})")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# agents


class Agent:
    """A running repl-primary or repl-secondary. `restart()` reuses the same flags."""

    def __init__(self, case, role, name, argv, admin, volume, store, port=None, nbd_port=None,
                 nbd_socket=None):
        self.case, self.role, self.name = case, role, name
        self.argv, self.admin, self.volume, self.store = argv, admin, volume, store
        self.port, self.nbd_port, self.nbd_socket = port, nbd_port, nbd_socket
        self.proc = None

    def start(self, wait=True):
        self.proc = Proc(self.name, self.argv, self.case.dir)
        if wait:
            try:
                self.wait_admin()
                if self.role == "primary" and self.nbd_port:
                    # The admin socket answers before the NBD port is bound; someone else may
                    # listen there (see below), so wait for the agent's own word.
                    wait_for(lambda: not self.proc.alive() or f"nbd://127.0.0.1:{self.nbd_port}/"
                             in self._log_since_start(), 20, f"{self.name} to bind its NBD port")
                    if not self.proc.alive():
                        raise Fail(f"{self.name} exited with {self.proc.returncode}")
            except Fail:
                if not self._nbd_port_taken():
                    raise
                # A restart reuses the NBD port picked when the agent was first started; another
                # test running in parallel may have been handed it meanwhile. Move to a new one.
                old, self.nbd_port = self.nbd_port, free_port()
                self.argv = [f"--nbd-listen=127.0.0.1:{self.nbd_port}"
                             if a == f"--nbd-listen=127.0.0.1:{old}" else a for a in self.argv]
                log(f"{self.name}: NBD port {old} was taken meanwhile; restarting on {self.nbd_port}")
                self.proc = Proc(self.name, self.argv, self.case.dir)
                self.wait_admin()
        return self

    def _log_since_start(self):
        text = self.proc.log_path.read_text(errors="replace")
        return text[text.rfind("=== "):]

    def _nbd_port_taken(self):
        if not self.nbd_port or self.proc.alive():
            return False
        return (f"bind/listen 127.0.0.1:{self.nbd_port}: Address already in use"
                in self._log_since_start())

    def wait_admin(self, timeout=20):
        wait_for(lambda: status(self.admin, self.volume), timeout,
                 f"{self.name} admin socket {self.admin} to answer", procs=[self.proc])
        if self.nbd_port:
            wait_for(lambda: port_listening(self.nbd_port), timeout,
                     f"{self.name} NBD port {self.nbd_port} to listen", procs=[self.proc])
        if self.nbd_socket:
            wait_for(lambda: os.path.exists(self.nbd_socket), timeout,
                     f"{self.name} NBD socket {self.nbd_socket}", procs=[self.proc])

    def restart(self, wait=True):
        if self.proc and self.proc.alive():
            raise Fail(f"restart of {self.name} while it still runs")
        return self.start(wait)

    def status(self):
        return status(self.admin, self.volume)

    def stop(self, expect_clean=True):
        rc = self.proc.stop()
        if expect_clean:
            check(rc == 0, f"{self.name} exited {rc} on SIGTERM (expected 0); log:\n"
                  f"{self.proc.tail(30)}")
        return rc

    def kill9(self):
        return self.proc.kill9()

    def freeze(self):
        """SIGSTOP: a frozen secondary acks nothing, so the primary's writes stay unacked."""
        log(f"SIGSTOP {self.name} pid {self.proc.pid}: writes stay unacked")
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        """SIGCONT, if it still runs (a frozen process may have been killed meanwhile)."""
        if self.alive():
            log(f"SIGCONT {self.name} pid {self.proc.pid}")
            os.kill(self.proc.pid, signal.SIGCONT)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    # NBD addresses (primary only)
    @property
    def uri(self):
        if self.nbd_socket:
            return f"nbd+unix:///{self.volume}?socket={self.nbd_socket}"
        return f"nbd://127.0.0.1:{self.nbd_port}/{self.volume}"


def in_sync(st):
    return (st.get("sync_state") == "in_sync" and st.get("connection") == "connected"
            and st.get("dirty_chunks") == 0 and st.get("inflight_writes") == 0)


def wait_in_sync(primary, timeout=60, secondary=None):
    """Wait until the primary reports in_sync twice in a row with nothing sent in between."""
    procs = [primary.proc] + ([secondary.proc] if secondary else [])

    def stable():
        a = primary.status()
        if not in_sync(a):
            return None
        time.sleep(0.1)
        b = primary.status()
        if in_sync(b) and b.get("sent_seq") == a.get("sent_seq") and \
                b.get("acked_seq") == b.get("sent_seq"):
            return b
        return None

    st = wait_for(stable, timeout, f"{primary.name} to be in_sync", interval=0.1, procs=procs)
    log(f"{primary.name} in_sync: {brief(st)}")
    return st


def wait_clean_bitmap(primary, secondary):
    """In sync, and the lazy clearing has emptied the bitmap; returns the in-sync status."""
    st = wait_in_sync(primary, timeout=60, secondary=secondary)
    wait_for(lambda: primary.status()["bitmap_bits_set"] == 0, 15,
             f"{primary.name} bitmap_bits_set == 0 (lazy clearing)", interval=0.2,
             procs=[primary.proc, secondary.proc])
    return st


def check_resync(primary, secondary, chunks, chunk_size, volume_size, before, label):
    """Once the pair is in sync again: exactly `chunks` chunks were resynced since
    `before` (resynced_bytes_total then; 0 for a restarted primary), never a full copy, and
    the stores are equal. Returns the status."""
    st = wait_in_sync(primary, timeout=60, secondary=secondary)
    delta = st["resynced_bytes_total"] - before
    want = chunks * chunk_size
    log(f"{label}: resync moved {delta} bytes ({delta / chunk_size:.2f} chunks), expected "
        f"{chunks} x {chunk_size} = {want}; resync_total_bytes={st['resync_total_bytes']}")
    check(delta != volume_size, f"{label}: a FULL resync happened ({delta} bytes); status {st}")
    check(delta == want, f"{label}: resync moved {delta} bytes, expected exactly {chunks} chunks "
          f"= {want}; status {st}")
    check(st["resync_total_bytes"] == want,
          f"{label}: resync_total_bytes {st['resync_total_bytes']} != {want}; {st}")
    assert_same_files(primary.store, secondary.store)
    return st


BITMAP_PAGES_OFFSET = 8192  # bitmap file: two 4 KiB header slots, then 4 KiB pages of bits


def bitmap_file_bits(path, nchunks):
    """The chunks whose bits are set in page 0 of a bitmap file (little-endian bits; up to
    32640 chunks)."""
    bits = int.from_bytes(pread(path, BITMAP_PAGES_OFFSET, (nchunks + 7) // 8), "little")
    return {c for c in range(nchunks) if bits >> c & 1}


def wait_status(agent, pred, timeout, what, procs=()):
    """Wait until pred(agent.status()) holds; returns that status."""
    return wait_for(lambda: (lambda s: s if pred(s) else None)(agent.status()), timeout, what,
                    procs=[agent.proc, *procs])


def write_chunks(uri, chunks, rng, chunk_size, flush=True):
    """Rewrite each chunk (index x chunk_size) with random bytes through NBD; {chunk: bytes}."""
    data = {}
    h = nbd_connect(uri)
    try:
        for c in chunks:
            data[c] = rng.randbytes(chunk_size)
            h.pwrite(data[c], c * chunk_size)
        if flush:
            h.flush()
    finally:
        h.shutdown()
    return data


def promoted_uri(status, volume):
    """The NBD URI of a volume a repl-secondary serves after promotion (from its status)."""
    return f"nbd://{status['nbd_address']}/{volume}"


class DrPorts:
    """Ports of a disaster-recovery pair chosen up front: site A's replication port (where its
    repl-secondary will listen once it fails back) and both sites' NBD ports once promoted."""

    def __init__(self):
        self.a_repl, self.a_nbd, self.b_nbd = free_port(), free_port(), free_port()


def dr_pair(case, volume, bitmap, extra=()):
    """Site B: repl-secondary that can be promoted (--nbd-listen, --peer = site A's future
    replication port); site A: repl-primary with the bitmap file spec `bitmap`. `extra` goes to
    both. Returns (a, b, DrPorts)."""
    ports = DrPorts()
    b = case.secondary(volume=volume, size="64M", name="siteB", extra=[
        f"--nbd-listen=127.0.0.1:{ports.b_nbd}", f"--peer=127.0.0.1:{ports.a_repl}", *extra])
    a = case.primary(b.port, volume=volume, size="64M", name="siteA", bitmap=bitmap,
                     extra=list(extra))
    return a, b, ports


def dr_failback(case, a, b, ports, volume, bitmap_file, extra=()):
    """Site A back as repl-secondary on its old store with its old bitmap file, replicating from
    B (promoted) and ready to be promoted itself."""
    return case.secondary(volume=volume, store=a.store, port=ports.a_repl, name="siteA-back",
                          extra=[f"--bitmap={bitmap_file}", f"--nbd-listen=127.0.0.1:{ports.a_nbd}",
                                 f"--peer=127.0.0.1:{b.port}", *extra])


def brief(st):
    keys = ("connection", "sync_state", "dirty_chunks", "bitmap_bits_set", "inflight_writes",
            "inflight_bytes", "sent_seq", "acked_seq", "resynced_bytes_total",
            "replicated_writes_total", "last_error")
    return ", ".join(f"{k}={st.get(k)!r}" for k in keys if k in st)


# ----------------------------------------------------------------------------------------------
# WAN proxy


# The cap is ratecap.py rather than TOOLING.md's `pv -L`: pv banks up to 5 s of its rate while
# the link is idle and then passes that much at once (see ratecap.py).
_WAN_SH = """#!/bin/sh
# wan.sh ONE_WAY_MS HOST PORT [RATE]: one connection's pipe, delayed both ways, optionally capped.
if [ -n "$4" ]; then
  exec sh -c "delay -b 64m $1 | RATECAP $4 | socat - TCP:$2:$3,nodelay | delay -b 64m $1"
else
  exec sh -c "delay -b 64m $1 | socat - TCP:$2:$3,nodelay | delay -b 64m $1"
fi
"""


class Wan:
    """A TCP proxy on 127.0.0.1:.port to 127.0.0.1:dest_port adding `one_way_ms` each way
    (socat + delay; TOOLING.md), optionally capped to `rate` (ratecap.py; pv -L syntax, e.g. "100m").
    `cut()` kills the proxy's process group (all connections drop); `restore()` listens again
    on the same port. Logs go to the current test's dir (or `logdir`)."""

    _n = 0

    def __init__(self, one_way_ms, dest_port, rate=None, logdir=None):
        require_tools("socat", "delay")
        Wan._n += 1
        self.one_way_ms, self.dest_port, self.rate = one_way_ms, dest_port, rate
        self.dir = Path(logdir or (_CURRENT_CASE.dir if _CURRENT_CASE else
                                   tempfile.mkdtemp(prefix="br-wan-")))
        self.name = f"wan{Wan._n}"
        self.script = self.dir / "wan.sh"
        if not self.script.exists():
            ratecap = f"{sys.executable} {Path(__file__).resolve().parent / 'ratecap.py'}"
            self.script.write_text(_WAN_SH.replace("RATECAP", ratecap))
            self.script.chmod(0o755)
        self.port = free_port()
        self.proc = None
        self.restore()

    def restore(self):
        if self.proc and self.proc.alive():
            raise Fail(f"{self.name} restore while running")
        exec_cmd = f"{self.script} {self.one_way_ms} 127.0.0.1 {self.dest_port}"
        if self.rate:
            exec_cmd += f" {self.rate}"
        self.proc = Proc(self.name, [
            "socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork,nodelay",
            f"EXEC:{exec_cmd}"], self.dir, new_session=True)
        wait_for(lambda: port_listening(self.port), 10, f"{self.name} to listen on {self.port}",
                 procs=[self.proc])

    def cut(self):
        log(f"{self.name}: cutting the link (kill process group {self.proc.pid})")
        self.proc.kill9()


# ----------------------------------------------------------------------------------------------
# files


def make_sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(parse_size(size))


def fill_random(path, size, seed, chunk=4 * MiB):
    """Write `size` bytes of deterministic pseudo-random data (fast: a repeated-but-shifted
    pool, different for every chunk)."""
    size = parse_size(size)
    rng = random.Random(seed)
    pool = rng.randbytes(chunk + 4096)
    with open(path, "wb") as f:
        off = 0
        while off < size:
            n = min(chunk, size - off)
            shift = rng.randrange(4096)
            head = struct.pack("<QQ", seed & (2**64 - 1), off)
            f.write((head + pool[shift + 16:shift + n])[:n])
            off += n


def compare_files(a, b, block=4 * MiB):
    """None when equal, else a string naming the first differing offset (or the sizes)."""
    sa, sb = os.path.getsize(a), os.path.getsize(b)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                n = min(len(x), len(y))
                j = next((i for i in range(0, n, 4096) if x[i:i + 4096] != y[i:i + 4096]), n)
                while j < n and x[j] == y[j]:
                    j += 1
                if j < n:
                    first = off + j
                    return (f"{a} and {b} differ; first differing byte at offset {first} "
                            f"(0x{first:x}, 64K chunk #{first // (64 * KiB)}): "
                            f"{x[j:j + 16].hex()} vs {y[j:j + 16].hex()}")
                break  # one is a prefix of the other
            if not x:
                break
            off += len(x)
    if sa != sb:
        return f"{a} ({sa} bytes) and {b} ({sb} bytes) differ in size"
    return None


def supports_o_direct(directory):
    """Whether files in `directory` can be opened with O_DIRECT (not on tmpfs before Linux 6.6)."""
    probe = Path(directory) / ".o_direct_probe"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def assert_same_files(a, b):
    diff = compare_files(a, b)
    if diff:
        raise Fail(diff)
    log(f"files equal: {a} == {b} ({os.path.getsize(a)} bytes)")


def stop_pair_and_compare(prim, sec):
    """A pair's stores equal, both agents stopped cleanly (by PID), and the stores still equal:
    a clean stop must leave nothing unwritten on either side."""
    assert_same_files(prim.store, sec.store)
    prim.stop()
    sec.stop()
    assert_same_files(prim.store, sec.store)


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def pread(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# NBD


def nbd_connect(uri):
    nbd = require_nbd_module()
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


class RawNBD:
    """A hand-made NBD client (fixed newstyle, NBD_OPT_GO, simple replies) for sending
    requests a well-behaved client library refuses to send."""

    NBDMAGIC = 0x4E42444D41474943
    IHAVEOPT = 0x49484156454F5054
    REPLY_MAGIC = 0x3E889045565A9
    REQUEST_MAGIC = 0x25609513
    SIMPLE_REPLY_MAGIC = 0x67446698
    OPT_GO = 7
    REP_ACK, REP_INFO = 1, 3
    CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 6

    def __init__(self, host, port, export, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        magic, opt, hflags = struct.unpack(">QQH", self._recv(18))
        if magic != self.NBDMAGIC or opt != self.IHAVEOPT:
            raise Fail(f"bad NBD greeting {magic:x} {opt:x}")
        cflags = hflags & 3  # FIXED_NEWSTYLE | NO_ZEROES, as offered
        self.sock.sendall(struct.pack(">I", cflags))
        name = export.encode()
        payload = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self.sock.sendall(struct.pack(">QII", self.IHAVEOPT, self.OPT_GO, len(payload)) + payload)
        self.size = self.flags = None
        while True:
            rmagic, ropt, rtype, rlen = struct.unpack(">QIII", self._recv(20))
            data = self._recv(rlen) if rlen else b""
            if rmagic != self.REPLY_MAGIC:
                raise Fail(f"bad option reply magic {rmagic:x}")
            if rtype == self.REP_ACK:
                break
            if rtype & 0x80000000:
                self.sock.close()
                raise OSError(f"NBD_OPT_GO refused: reply type 0x{rtype:x} {data!r}")
            if rtype == self.REP_INFO and len(data) >= 12 and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.flags = struct.unpack(">QH", data[2:12])
        self.cookie = 0

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += b
        return buf

    def send_request(self, cmd, offset, length, flags=0, data=b""):
        self.cookie += 1
        self.sock.sendall(struct.pack(">IHHQQI", self.REQUEST_MAGIC, flags, cmd, self.cookie,
                                      offset, length) + data)
        return self.cookie

    def read_reply(self, read_len=0):
        """(error, cookie, data); data only for a successful read of read_len bytes."""
        magic, err, cookie = struct.unpack(">IIQ", self._recv(16))
        if magic != self.SIMPLE_REPLY_MAGIC:
            raise Fail(f"bad simple reply magic {magic:x}")
        data = self._recv(read_len) if (err == 0 and read_len) else b""
        return err, cookie, data

    def request(self, cmd, offset, length, flags=0, data=b""):
        cookie = self.send_request(cmd, offset, length, flags, data)
        err, rcookie, rdata = self.read_reply(length if cmd == self.CMD_READ else 0)
        check_eq(rcookie, cookie, "reply cookie")
        return err, rdata

    def wait_closed(self, timeout=5):
        """True if the server closes the connection within `timeout` (data received before
        the close is ignored)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        try:
            self.send_request(self.CMD_DISC, 0, 0)
        except OSError:
            pass
        self.sock.close()


# ----------------------------------------------------------------------------------------------
# load generator (a separate process, so the test can kill things while it runs)


class Load:
    """Random aligned writes at queue depth `qd` to `uri` until stopped. Progress is readable
    through `.completed()`; `.stop()` drains, flushes and checks the exit status."""

    _n = 0

    def __init__(self, case, uri, size, seed, qd=16, min_bs=4 * KiB, max_bs=64 * KiB, span=None):
        Load._n += 1
        self.stats = case.dir / f"load{Load._n}.stats"
        self.proc = Proc(f"load{Load._n}", [
            "/usr/bin/python3", Path(__file__).resolve(), "load", uri, str(size), str(seed),
            str(qd), str(min_bs), str(max_bs), str(span or size), str(self.stats)], case.dir)

    def completed(self):
        try:
            return json.loads(self.stats.read_text())["completed"]
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def wait_progress(self, n, timeout=20, procs=()):
        start = self.completed()
        return wait_for(lambda: self.completed() >= start + n, timeout,
                        f"{self.proc.name} to complete {n} more writes (from {start})",
                        procs=[self.proc, *procs])

    def stop(self, expect_ok=True):
        rc = self.proc.stop(timeout=30)
        done = self.completed()
        if expect_ok:
            check(rc == 0, f"{self.proc.name} exited {rc}; log:\n{self.proc.tail(20)}")
        log(f"{self.proc.name}: {done} writes completed")
        return done


def _load_main(argv):
    uri, size, seed, qd, min_bs, max_bs, span, stats = argv
    size, seed, qd, min_bs, max_bs, span = map(int, (size, seed, qd, min_bs, max_bs, span))
    import nbd
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    rng = random.Random(seed)
    pool = rng.randbytes(2 * max_bs)
    h = nbd.NBD()
    h.connect_uri(uri)
    completed = 0
    errors = []

    def done(err):
        nonlocal completed
        if err.value != 0:
            errors.append(err.value)
        completed += 1
        return 1  # auto-retire

    sizes = []
    s = min_bs
    while s <= max_bs:
        sizes.append(s)
        s *= 2
    last_stats = 0.0
    while not stop.is_set() and not errors:
        while h.aio_in_flight() < qd:
            n = rng.choice(sizes)
            off = rng.randrange(0, (min(span, size) - n) // 512 + 1) * 512
            o = rng.randrange(0, max_bs)
            h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(pool[o:o + n])), off,
                         completion=done)
        h.poll(1)
        now = time.monotonic()
        if now - last_stats > 0.1:
            tmp = stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"completed": completed}, f)
            os.replace(tmp, stats)
            last_stats = now
    while h.aio_in_flight() > 0:
        h.poll(1)
    if not errors:
        h.flush()
    with open(stats + ".tmp", "w") as f:
        json.dump({"completed": completed, "errors": errors}, f)
    os.replace(stats + ".tmp", stats)
    h.shutdown()
    print(f"load: {completed} writes, errors {errors}", flush=True)
    sys.exit(1 if errors else 0)


# ----------------------------------------------------------------------------------------------
# the test case


class Case:
    """A temp dir plus the agents started by one test."""

    def __init__(self, name, seed):
        self.name, self.seed = name, seed
        base = os.environ.get("BLOCKREPL_TMP") or None
        self.dir = Path(tempfile.mkdtemp(prefix=f"br-{name}-", dir=base))
        self.agents = []
        self._n = {}

    def path(self, name):
        return self.dir / name

    def _unique(self, prefix):
        self._n[prefix] = self._n.get(prefix, 0) + 1
        return f"{prefix}{self._n[prefix]}"

    def secondary(self, volume="vol0", store=None, size=None, port=None, meta=None, extra=(),
                  start=True, name=None):
        name = name or self._unique("secondary")
        store = Path(store or self.dir / f"{name}.img")
        port = port or free_port()
        admin = self.dir / f"{name}.admin"
        argv = [BIN / "repl-secondary", f"--volume={volume}", f"--store={store}",
                f"--listen=127.0.0.1:{port}", f"--admin-socket={admin}"]
        if meta:
            argv.append(f"--meta={meta}")
        if size is not None:
            argv.append(f"--size={size}")
        argv += list(extra)
        a = Agent(self, "secondary", name, argv, admin, volume, store, port=port)
        self.agents.append(a)
        return a.start() if start else a

    def primary(self, secondary_port, volume="vol0", store=None, size=None, nbd="tcp",
                bitmap=None, async_n=None, sync=False, max_inflight_bytes=None,
                assume_clean=False, extra=(), start=True, name=None):
        name = name or self._unique("primary")
        store = Path(store or self.dir / f"{name}.img")
        admin = self.dir / f"{name}.admin"
        argv = [BIN / "repl-primary", f"--volume={volume}", f"--store={store}",
                f"--secondary=127.0.0.1:{secondary_port}"]
        nbd_port = nbd_socket = None
        if nbd == "unix":
            nbd_socket = self.dir / f"{name}.nbd.sock"
            argv.append(f"--nbd-socket={nbd_socket}")
        else:
            nbd_port = free_port()
            argv.append(f"--nbd-listen=127.0.0.1:{nbd_port}")
        argv.append(f"--admin-socket={admin}")
        if bitmap:
            argv.append(f"--bitmap={bitmap}")
        if sync:
            argv.append("--sync")
        elif async_n is not None:
            argv.append(f"--async={async_n}")
        if max_inflight_bytes is not None:
            argv.append(f"--max-inflight-bytes={max_inflight_bytes}")
        if size is not None:
            argv.append(f"--size={size}")
        if assume_clean:
            argv.append("--assume-clean")
        argv += list(extra)
        a = Agent(self, "primary", name, argv, admin, volume, store, nbd_port=nbd_port,
                  nbd_socket=nbd_socket)
        self.agents.append(a)
        return a.start() if start else a

    def pair(self, size="64M", volume="vol0", secondary_extra=(), **primary_kw):
        """A secondary and a primary on fresh sparse stores, not yet necessarily in sync."""
        sec = self.secondary(volume=volume, size=size, extra=secondary_extra)
        prim = self.primary(sec.port, volume=volume, size=size, **primary_kw)
        return prim, sec

    def dump_logs(self):
        for p in _ALL_PROCS:
            print(f"\n----- {p.name} (pid {p.pid}, exit {p.returncode}) log "
                  f"{p.log_path} -----", flush=True)
            print(p.tail(120), flush=True)
        for a in self.agents:
            if a.alive():
                try:
                    print(f"----- {a.name} status: {json.dumps(a.status())}", flush=True)
                except Exception as e:
                    print(f"----- {a.name} status unavailable: {e}", flush=True)


_CURRENT_CASE = None


class _Deadline(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Deadline(f"test deadline reached (signal {signum})")


def main(body, name=None, default_seed=1):
    """Run `body(case)`; exit 0 / 1 / 77. Always stops every started process by PID."""
    name = name or Path(sys.argv[0]).stem
    seed = int(os.environ.get("BLOCKREPL_SEED", default_seed))
    rc = 1
    case = None
    signal.signal(signal.SIGTERM, _on_alarm)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(os.environ.get("BLOCKREPL_DEADLINE", "85")))
    mtimes = binary_mtimes()
    try:
        require_binaries()
        case = Case(name, seed)
        global _CURRENT_CASE
        _CURRENT_CASE = case
        log(f"{name}: seed {seed} (set BLOCKREPL_SEED to change), binaries {BIN}, "
            f"dir {case.dir}")
        body(case)
        rc = 0
        log(f"{name}: PASS")
    except Skip as e:
        print(f"SKIP: {e}", flush=True)
        rc = 77
    except (Exception, _Deadline) as e:
        traceback.print_exc()
        print(f"\nFAIL: {name}: {e}", flush=True)
        if case:
            case.dump_logs()
        if binary_mtimes() != mtimes:
            print(f"\nNOTE: binaries in {BIN} were rebuilt while this test ran; the failure "
                  f"may come from that.", flush=True)
        rc = 1
    finally:
        signal.alarm(0)
        _cleanup_all()
        reports = sanitizer_reports()
        if reports:
            print("\nFAIL: sanitizer reports in the logs:\n  " + "\n  ".join(reports[:20]),
                  flush=True)
            if case and rc == 0:
                case.dump_logs()
            rc = 1
        if case:
            if rc == 0 and not os.environ.get("BLOCKREPL_KEEP"):
                shutil.rmtree(case.dir, ignore_errors=True)
            else:
                print(f"(kept {case.dir})", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "load":
        _load_main(sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
