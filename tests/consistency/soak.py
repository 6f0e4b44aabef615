#!/usr/bin/python3
"""Convergence soak: random writes under random faults; after every round the pair must
reconverge and the two stores must be equal byte for byte.

Run:
  /usr/bin/python3 tests/consistency/soak.py --short                 # CI form: 4 rounds, 32 MiB
  /usr/bin/python3 tests/consistency/soak.py --duration 1800 --json soak.json   # by hand
  /usr/bin/python3 tests/consistency/soak.py --rounds 8 --seed 7     # a fixed number of rounds
Options:
  --duration S   time budget: a round starts only if, at the average round time so far, it
                 ends within S seconds (default 600 when neither --rounds nor --short is given)
  --rounds N     at most N rounds (--short: 4)
  --seed S       default BLOCKREPL_SEED, else 4711 (printed)
  --size SIZE    volume size (default 64M; --short 32M)
  --delay-ms MS  the proxy's delay each way (default 1)
  --json FILE    also write the figures (and each round's) as JSON
  --inject-divergence  shows the check failing: 7 bytes of the secondary's store are changed
                 before the first comparison; the run must report exactly 7 divergent bytes
                 and exit 1
Environment as for tests/e2e (BLOCKREPL_BIN, BLOCKREPL_TMP, BLOCKREPL_KEEP, BLOCKREPL_DEADLINE;
the deadline defaults to 85 s for --short, else the time budget plus a margin).
Exit: 0 every round reconverged with 0 divergent bytes; 1 otherwise (the summary names the
failed round and its faults, and the temp dir with stores and logs is kept); 77 a tool is
missing.

The setup (one pair for the whole soak)
---------------------------------------
A secondary and a primary on fresh sparse stores, with a write-intent bitmap file
(--bitmap=FILE,65536,1), and the replication routed through a harness.Wan proxy (socat + delay)
so the link can be cut. The initial full sync is not counted as resync.

One round
---------
1. A harness.Load (random 512-aligned writes of 4..64 KiB through NBD, seeded queue depth and
   span) runs against the primary.
2. After a random number of completed writes, a fault is injected and then healed:
   - kill9_primary:   kill -9, restart on the same store and bitmap file; the client (a new Load)
                      reconnects. The restart resyncs the chunks the bitmap file flags.
   - kill9_secondary: kill -9, the load goes on for a random time (the primary marks the
                      chunks), restart on the same store, `replctl connect` (skip the backoff).
   - link_cut:        the proxy's process group killed, the load goes on for a random time,
                      the proxy restored, `replctl connect`.
   - restart:         SIGTERM of the primary or the secondary (it must exit 0), then restart
                      (for the primary: its client reconnects).
3. In some rounds a second fault (any kind) is injected while the resync that healed the first
   one runs. To give it a resync to hit, the resync is rate-limited during that heal (`replctl
   resync rate`, or --resync-rate for a restarted primary) so that it lasts about a second; the
   limit is lifted afterwards. It counts as `during_resync` only when the primary reported a
   resync in progress just before the fault (otherwise as an ordinary fault).
4. The load completes more writes (the healed pair must serve), then is stopped (it flushes).
5. Convergence: wait until the primary is in_sync (harness.wait_in_sync), the secondary
   reports consistent/in_sync and has applied all it acknowledged; then, with both agents still
   running and no writes in flight, both store files are read in chunks and every differing
   byte is counted (not a hash). Divergent bytes must be 0.

The short form's first four rounds are a fixed coverage table (each fault kind first, both
restart targets, three second faults during a resync); later rounds draw everything at random.
Faults are counted by kind (`restart` = SIGTERM restarts of either agent); `during_resync`
counts the second faults, which are also counted under their kind. "resynced chunks" sums the
primary's resynced_chunks_total over its processes (sampled just before each stop/kill, so a
kill -9 mid-resync can hide the last few).

Before the soak, the comparison itself is checked on files with known differences (it must
count exactly the bytes changed, and bytes only one file has).

A seed fixes the fault plan (which faults, in which rounds) and each round's parameters; the
timing, hence the exact interleaving, varies from run to run.
"""

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import harness as H  # noqa: E402

CHUNK = 64 * H.KiB
VOLUME = "soak"
DEFAULT_SEED = 4711
KINDS = ("kill9_primary", "kill9_secondary", "link_cut", "restart")
# A concrete fault: the kinds above, with the restart target spelled out.
FAULTS = ("kill9_primary", "kill9_secondary", "link_cut", "restart_primary", "restart_secondary")
# --short's first rounds: (first fault, second fault during its resync or None). Every kind
# comes first once, both restart targets appear, and three resyncs are hit (by a cut, a clean
# primary restart and a primary crash).
COVERAGE = (("kill9_primary", "restart_primary"),
            ("kill9_secondary", "link_cut"),
            ("link_cut", None),
            ("restart_secondary", "kill9_primary"))


def kind_of(fault):
    return "restart" if fault.startswith("restart") else fault


def hits_primary(fault):
    return fault in ("kill9_primary", "restart_primary")


# ----------------------------------------------------------------------------------------------
# the byte-for-byte comparison


def count_diff(x, y):
    """Differing bytes between two equally long byte strings (XOR as big integers: C speed)."""
    n = len(x)
    xor = (int.from_bytes(x, "little") ^ int.from_bytes(y, "little")).to_bytes(n, "little")
    return n - xor.count(0)


def compare_stores(a, b, block=4 * H.MiB):
    """Read both files in blocks; return (bytes compared, divergent bytes, {chunk: bytes}).
    Bytes present in only one file (a size mismatch) count as divergent."""
    compared = divergent = 0
    chunks = {}
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            x, y = fa.read(block), fb.read(block)
            if not x and not y:
                break
            compared += max(len(x), len(y))
            if x != y:
                n = min(len(x), len(y))
                for c in range(0, n, CHUNK):
                    xc, yc = x[c:c + CHUNK], y[c:min(c + CHUNK, n)]
                    xc = xc[:len(yc)]
                    if xc != yc:
                        d = count_diff(xc, yc)
                        chunks[(off + c) // CHUNK] = d
                        divergent += d
                extra = abs(len(x) - len(y))
                if extra:
                    divergent += extra
                    chunks[(off + n) // CHUNK] = chunks.get((off + n) // CHUNK, 0) + extra
            off += max(len(x), len(y))
    return compared, divergent, chunks


def self_test(dirpath, rng):
    """compare_stores on files with known differences: it must count exactly those bytes
    (flips inside one chunk, across a block boundary, at both ends, and a size mismatch)."""
    a, b = Path(dirpath) / "selftest-a.img", Path(dirpath) / "selftest-b.img"
    size = 9 * H.MiB + 3 * CHUNK + 100  # not a multiple of the block or the chunk
    H.fill_random(a, size, rng.getrandbits(32))
    data = bytearray(a.read_bytes())
    H.check(compare_stores(a, a)[1:] == (0, {}), "self-test: a file differs from itself")
    flips = {0, size - 1, 4 * H.MiB - 1, 4 * H.MiB, 5 * CHUNK + 1, 5 * CHUNK + 2}
    flips |= {rng.randrange(size) for _ in range(40)}
    for off in flips:
        data[off] ^= 1 + rng.randrange(255)  # never 0: the byte really changes
    b.write_bytes(data)
    got = compare_stores(a, b)
    H.check(got[0] == size and got[1] == len(flips),
            f"self-test: {len(flips)} flipped bytes, compare_stores says {got[:2]}")
    H.check(sum(got[2].values()) == len(flips), f"self-test: per-chunk counts {got[2]}")
    with open(b, "ab") as f:
        f.write(b"x" * 10)
    got = compare_stores(a, b)
    H.check(got[:2] == (size + 10, len(flips) + 10),
            f"self-test: 10 extra bytes, compare_stores says {got[:2]}")
    a.unlink()
    b.unlink()
    H.log(f"self-test: compare_stores counts {len(flips)} flipped bytes and a size mismatch "
          f"exactly")


def inject_divergence(path, rng, count=7):
    """--inject-divergence: change `count` bytes of the secondary's store behind its back, so
    the comparison that follows must report exactly `count` divergent bytes (and fail)."""
    size = os.path.getsize(path)
    offs = set()
    while len(offs) < count:
        offs.add(rng.randrange(size))
    fd = os.open(path, os.O_RDWR)
    try:
        for off in offs:
            old = os.pread(fd, 1, off)[0]
            os.pwrite(fd, bytes([old ^ 0x5A]), off)
    finally:
        os.close(fd)
    H.log(f"--inject-divergence: changed {count} bytes of {path} at {sorted(offs)}")
    return count


# ----------------------------------------------------------------------------------------------
# the soak


class Soak:
    def __init__(self, case, opts):
        self.case, self.opts = case, opts
        # The fault plan has its own generator, so that it does not depend on timing (how
        # many draws a round made); everything else in a round draws from a per-round one.
        self.plan_rng = random.Random(case.seed)
        self.rng = random.Random(case.seed)
        self.size = H.parse_size(opts.size)
        self.bm = case.path("vol.bm")
        self.load = None
        self.loads = 0
        self.t0 = time.monotonic()
        # Figures for the summary / --json.
        self.rounds = []
        self.faults = {k: 0 for k in KINDS}
        self.faults["during_resync"] = 0
        self.fault_detail = {f: 0 for f in FAULTS}
        self.second_missed = 0  # second faults that came after the resync had ended
        self.full_resyncs = 0   # primary restarts that fell back to a full copy (unexpected)
        self.flagged_at_restart = 0  # chunks the bitmap file flagged at primary restarts
        self.bytes_compared = self.divergent = self.writes = 0
        self.resync_done = 0    # resynced chunks of primary processes that are gone
        self.resync_cur = 0     # resynced_chunks_total last read from the running primary
        self.resync_initial = 0
        self.failure = None
        self.current = None  # the round being run: {'faults': [...], ...}

    # --- setup
    def start(self):
        o = self.opts
        self.sec = self.case.secondary(volume=VOLUME, size=self.size)
        self.wan = H.Wan(o.delay_ms, self.sec.port, logdir=self.case.dir)
        self.prim = self.case.primary(self.wan.port, volume=VOLUME, size=self.size,
                                      bitmap=f"{self.bm},{CHUNK},1")
        st = H.wait_in_sync(self.prim, timeout=60, secondary=self.sec)
        self.resync_initial = self.resync_cur = st["resynced_chunks_total"]
        H.log(f"soak: initial full sync done ({self.resync_initial} chunks, not counted)")

    # --- resync accounting across primary restarts
    def sample_resync(self):
        try:
            self.resync_cur = self.prim.status()["resynced_chunks_total"]
        except H.StatusError:
            pass  # e.g. already dead: keep the last reading

    def primary_gone(self):
        self.resync_done += self.resync_cur
        self.resync_cur = 0

    def resynced_total(self):
        return self.resync_done + self.resync_cur - self.resync_initial

    # --- the client load
    def start_load(self, n):
        rng = self.rng
        self.loads += 1
        span = self.size // rng.choice([1, 2, 4])
        qd = rng.choice([1, 4, 16])
        self.load = H.Load(self.case, self.prim.uri, self.size,
                           self.case.seed * 100000 + self.loads, qd=qd, span=span)
        H.log(f"round {n}: load {self.load.proc.name}: qd {qd}, span {span // H.MiB} MiB")

    def load_lost(self):
        """The primary went away under the load: the client fails; reap it by PID."""
        load, self.load = self.load, None
        H.wait_for(lambda: not load.proc.alive(), 20, f"{load.proc.name} to end after its "
                   f"server went away")
        self.writes += load.stop(expect_ok=False)

    def stop_load(self):
        load, self.load = self.load, None
        self.writes += load.stop(expect_ok=True)  # drains, flushes, must have had no error

    def progress(self, lo, hi):
        """Let the load complete a random number of writes (the pair must keep serving)."""
        self.load.wait_progress(self.rng.randint(lo, hi), timeout=30,
                                procs=[self.prim.proc])

    # --- faults
    def break_(self, fault):
        """Inject `fault` (the link/agent is down afterwards)."""
        if hits_primary(fault):
            self.sample_resync()
            if fault == "kill9_primary":
                self.prim.kill9()
            else:
                self.prim.stop(expect_clean=True)  # SIGTERM under load: must exit 0
            self.primary_gone()
            self.load_lost()
        elif fault == "kill9_secondary":
            self.sec.kill9()
        elif fault == "restart_secondary":
            self.sec.stop(expect_clean=True)
        elif fault == "link_cut":
            old = self.wan.proc
            self.wan.cut()
            # Its whole group is dead: forget it, so the final cleanup never signals a
            # process group id that a long soak may have seen reused.
            if old in H._ALL_PROCS:
                H._ALL_PROCS.remove(old)
        else:
            raise ValueError(fault)
        self.fault_detail[fault] += 1
        self.faults[kind_of(fault)] += 1

    def throttle_rate(self, dirty_chunks):
        """A resync rate at which `dirty_chunks` take about 0.6-2.5 s (None: nothing to do)."""
        if dirty_chunks <= 0:
            return None
        secs = self.rng.uniform(0.6, 1.2) if self.opts.short else self.rng.uniform(1.0, 2.5)
        return max(64, int(dirty_chunks * CHUNK / secs) // H.KiB)  # KiB/s

    def heal(self, n, fault, throttle=False):
        """Undo `fault`: restart what was stopped, restore the link. With `throttle`, the
        resync that follows is rate-limited so that a second fault can hit it. Returns the
        rate limit set (KiB/s) or None."""
        rate = None
        if hits_primary(fault):
            if throttle:
                doc = json.loads(H.run([H.BIN / "replctl", "bitmap", "examine", "--json",
                                        self.bm], quiet=True).stdout)
                rate = self.throttle_rate(doc["dirty_chunks"])
            argv = self.prim.argv
            if rate:
                self.prim.argv = argv + [f"--resync-rate={rate}K"]
            try:
                self.prim.restart()
            finally:
                self.prim.argv = argv  # only this start is throttled
            self.check_primary_startup(n, fault)
            self.start_load(n)
        else:
            if throttle:
                rate = self.throttle_rate(self.prim.status()["dirty_chunks"])
                if rate:
                    H.ctl(self.prim, "resync", "rate", f"{rate}K")
            if fault == "link_cut":
                self.wan.restore()
            else:
                self.sec.restart()
            # The primary is in its reconnect backoff (up to 5 s): skip it.
            H.ctl(self.prim, "connect", "--timeout", "20")
        H.log(f"round {n}: healed {fault}" + (f" (resync limited to {rate} KiB/s)" if rate
                                              else ""))
        return rate

    def check_primary_startup(self, n, fault):
        """The restarted primary's bitmap note: a crash must not turn into a full copy."""
        text = self.prim.proc.log_path.read_text(errors="replace")
        text = text[text.rfind("\n=== ") + 1:]  # this run only (the log is shared by restarts)
        m = re.search(r"bitmap file \S+: (\d+) chunks flagged for resync ([^\n]*)", text)
        if not m:
            H.log(f"round {n}: (no bitmap startup note in {self.prim.proc.log_path})")
            return
        H.log(f"round {n}: primary restarted after {fault}: {m.group(1)} chunks flagged "
              f"{m.group(2)}")
        expected = "(clean shutdown)" if fault == "restart_primary" else "(after a crash)"
        H.check(m.group(2).startswith(expected), f"round {n}: after {fault} the primary's "
                f"bitmap note says {m.group(0)!r}, expected {expected}")
        self.flagged_at_restart += int(m.group(1))
        if "full resync" in m.group(2):  # the bitmap was not trusted: a full copy
            self.full_resyncs += 1
            H.log(f"round {n}: NOTE: the restart fell back to a full resync")

    def wait_resync_running(self, n, frac):
        """Wait until the primary's resync pass is running and `frac` done. Returns the status,
        or None when the pair was back in sync before that (the resync was missed)."""
        def running():
            st = self.prim.status()
            total, done = st.get("resync_total_chunks", 0), st.get("resync_done_chunks", 0)
            if st["sync_state"] == "resyncing" and total > 0 and frac * total <= done < total:
                return st
            # Over already (missed: a fast resync, or slow status polls on a sanitizer build).
            # Not H.in_sync(): the load is still running, so with writes in flight the primary
            # says out_of_sync rather than in_sync. Connected and no longer resyncing is enough
            # (a reconnect with flagged chunks is "resyncing" from its first moment).
            if st["connection"] == "connected" and st["sync_state"] != "resyncing":
                return "in_sync"
            return None
        st = H.wait_for(running, 30, f"round {n}: the resync to be running ({frac:.0%} done)",
                        interval=0.02, procs=[self.prim.proc, self.sec.proc])
        return None if st == "in_sync" else st

    # --- a round
    def plan(self, n):
        """(first fault, second fault or None) for round n (0-based)."""
        if self.opts.short and n < len(COVERAGE):
            return COVERAGE[n]
        rng = self.plan_rng

        def draw():  # each kind equally likely, then the restart's target
            kind = rng.choice(KINDS)
            return kind if kind != "restart" else rng.choice(("restart_primary",
                                                              "restart_secondary"))
        first = draw()
        second = draw() if rng.random() < 0.4 else None
        return first, second

    def round(self, n):
        self.rng = random.Random(self.case.seed * 1000 + n)
        rng, short = self.rng, self.opts.short
        t = time.monotonic()
        first, second = self.plan(n)
        rec = {"round": n + 1, "faults": [first], "during_resync": False}
        self.current = rec
        H.log(f"===== round {n + 1}: {first}"
              + (f", then {second} during the resync" if second else ""))
        resync_before = self.resynced_total()
        writes_before = self.writes

        self.start_load(n + 1)
        self.progress(50, 400 if short else 2000)
        self.break_(first)
        # Down for a while; unless the primary is the one down, the client keeps writing and
        # the primary marks those chunks.
        time.sleep(rng.uniform(0.1, 0.8) if short else rng.uniform(0.2, 3.0))
        rate = self.heal(n + 1, first, throttle=second is not None)

        if second:
            rec["faults"].append(second)
            st = self.wait_resync_running(n + 1, rng.uniform(0.0, 0.6)) if rate else None
            if st:
                rec["during_resync"] = True
                self.faults["during_resync"] += 1
                H.log(f"round {n + 1}: {second} during the resync ({st['resync_done_chunks']}/"
                      f"{st['resync_total_chunks']} chunks)")
            else:
                self.second_missed += 1
                H.log(f"round {n + 1}: the resync was over (or empty) before the second fault: "
                      f"{second} counts as an ordinary fault")
                self.progress(10, 100)  # not back to back: the healed pair serves first
            self.break_(second)
            time.sleep(rng.uniform(0.05, 0.5) if short else rng.uniform(0.1, 2.0))
            self.heal(n + 1, second)
        if rate:
            H.ctl(self.prim, "resync", "rate", "0")  # lift the limit (a restarted one too)

        self.progress(20, 200 if short else 1000)
        self.stop_load()
        rec.update(self.converge(n + 1))
        self.sample_resync()
        rec.update(writes=self.writes - writes_before,
                   resynced_chunks=self.resynced_total() - resync_before,
                   seconds=round(time.monotonic() - t, 2))
        self.rounds.append(rec)
        H.log(f"round {n + 1} ok: faults {' + '.join(rec['faults'])}"
              f"{' (2nd during resync)' if rec['during_resync'] else ''}, {rec['writes']} writes,"
              f" {rec['resynced_chunks']} chunks resynced, {rec['bytes_compared']} bytes "
              f"compared, {rec['divergent_bytes']} divergent, {rec['seconds']} s")

    def converge(self, n):
        """Wait for in_sync and compare the stores byte for byte (both agents still running,
        no client writing: nothing can change the files)."""
        timeout = 60 if self.opts.short else 180
        st = H.wait_in_sync(self.prim, timeout=timeout, secondary=self.sec)

        def sec_settled():
            s = self.sec.status()
            ok = (s.get("consistent") is True and s.get("connection") == "connected"
                  and s.get("sync_state") == "in_sync" and s.get("applied_seq") == s.get(
                      "acked_seq") and s.get("generation") == st.get("generation"))
            return s if ok else None
        sst = H.wait_for(sec_settled, 20, f"round {n}: the secondary to be consistent, in_sync, "
                         f"following the primary's generation, with all it acked applied",
                         interval=0.1, procs=[self.prim.proc, self.sec.proc])
        H.log(f"round {n}: secondary consistent, applied_seq {sst['applied_seq']} "
              f"(primary acked_seq {st['acked_seq']})")
        if self.opts.inject_divergence:
            inject_divergence(self.sec.store, self.rng)
        compared, divergent, chunks = compare_stores(self.prim.store, self.sec.store)
        self.bytes_compared += compared
        self.divergent += divergent
        if divergent:
            worst = sorted(chunks.items())[:20]
            # Measure again a little later: tells a lagging apply from a lasting divergence.
            time.sleep(2)
            _, again, _ = compare_stores(self.prim.store, self.sec.store)
            raise H.Fail(f"round {n}: the stores diverge after reconverging: {divergent} bytes in "
                         f"{len(chunks)} chunks of 64 KiB (first: "
                         f"{', '.join(f'#{c}: {d} B' for c, d in worst)}); {again} divergent "
                         f"bytes 2 s later; primary {H.brief(self.prim.status())}")
        return {"bytes_compared": compared, "divergent_bytes": divergent}

    # --- the whole soak
    def run(self):
        o = self.opts
        self_test(self.case.dir, self.rng)
        self.start()
        n = 0
        while o.rounds is None or n < o.rounds:
            elapsed = time.monotonic() - self.t0
            if o.duration is not None and n > 0:
                avg = elapsed / n
                if elapsed + avg > o.duration:
                    H.log(f"soak: time budget {o.duration} s: no room for round {n + 1} "
                          f"(about {avg:.1f} s each)")
                    break
            try:
                self.round(n)
            except BaseException as e:
                cur = self.current or {"faults": ["?"], "during_resync": False}
                self.failure = (f"round {n + 1} ({' + '.join(cur['faults'])}"
                                f"{', 2nd during resync' if cur['during_resync'] else ''}): {e}")
                raise
            n += 1

    # --- reporting
    def figures(self):
        return {
            "seed": self.case.seed,
            "ok": self.failure is None and self.divergent == 0,
            "rounds": len(self.rounds) + (1 if self.failure else 0),  # incl. a failed one
            "rounds_passed": len(self.rounds),
            "faults": sum(self.faults[k] for k in KINDS),
            "faults_by_kind": dict(self.faults),
            "faults_detail": dict(self.fault_detail),
            "second_faults_after_resync_ended": self.second_missed,
            "bytes_compared": self.bytes_compared,
            "divergent_bytes": self.divergent,
            "resynced_chunks_total": self.resynced_total(),
            "chunks_flagged_at_primary_restarts": self.flagged_at_restart,
            "full_resyncs_after_restart": self.full_resyncs,
            "writes": self.writes,
            "elapsed_s": round(time.monotonic() - self.t0, 1),
            "volume_bytes": self.size,
            "chunk_bytes": CHUNK,
            "short": self.opts.short,
            "failure": self.failure,
            "per_round": self.rounds,
        }

    def report(self):
        f = self.figures()
        k = f["faults_by_kind"]
        passed = "" if f["rounds"] == f["rounds_passed"] else f" ({f['rounds_passed']} passed)"
        print(f"\nsoak: seed {f['seed']}, rounds {f['rounds']}{passed}, faults {f['faults']} "
              f"(kill9_primary {k['kill9_primary']}, kill9_secondary {k['kill9_secondary']}, "
              f"link_cut {k['link_cut']}, restart {k['restart']}, during_resync "
              f"{k['during_resync']}), bytes compared {f['bytes_compared']}, divergent bytes "
              f"{f['divergent_bytes']}, resynced chunks total {f['resynced_chunks_total']}, "
              f"elapsed {f['elapsed_s']} s", flush=True)
        print(f"soak: {f['writes']} client writes; restarts: primary "
              f"{f['faults_detail']['restart_primary']}, secondary "
              f"{f['faults_detail']['restart_secondary']}; second faults that came after the "
              f"resync had ended: {f['second_faults_after_resync_ended']}; chunks flagged at "
              f"primary restarts {f['chunks_flagged_at_primary_restarts']}, full resyncs "
              f"after a restart {f['full_resyncs_after_restart']}", flush=True)
        if self.failure:
            print(f"soak: FAILED in {self.failure}", flush=True)
        if self.opts.json:
            Path(self.opts.json).write_text(json.dumps(f, indent=2) + "\n")
            H.log(f"soak: figures written to {self.opts.json}")


# ----------------------------------------------------------------------------------------------
# main


def parse_args():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--short", action="store_true",
                    help="CI form: 4 rounds covering every fault kind, 32 MiB volume")
    ap.add_argument("--duration", type=float, default=None,
                    help="time budget in seconds: no round starts that would not end within "
                         "it (default 600 when neither --rounds nor --short is given)")
    ap.add_argument("--rounds", type=int, default=None, help="number of rounds (at most)")
    ap.add_argument("--seed", type=int, default=None,
                    help=f"seed (default BLOCKREPL_SEED, else {DEFAULT_SEED})")
    ap.add_argument("--size", default=None, help="volume size (default 64M; --short 32M)")
    ap.add_argument("--delay-ms", type=int, default=1, help="proxy delay each way (ms)")
    ap.add_argument("--json", default=None, help="also write the figures to FILE as JSON")
    ap.add_argument("--inject-divergence", action="store_true",
                    help="change 7 bytes of the secondary's store before the first comparison: "
                         "the run must report exactly 7 divergent bytes and exit 1")
    o = ap.parse_args()
    if o.short:
        # No time budget by default: all of the coverage table must run (deadline 85 s).
        o.rounds = len(COVERAGE) if o.rounds is None else o.rounds
    elif o.rounds is None and o.duration is None:
        o.duration = 600
    o.size = o.size or ("32M" if o.short else "64M")
    if o.seed is None:
        o.seed = int(os.environ.get("BLOCKREPL_SEED", DEFAULT_SEED))
    if o.json:
        o.json = os.path.abspath(o.json)
    return o


def main():
    opts = parse_args()
    # harness.main takes the seed and its abort deadline from the environment.
    os.environ["BLOCKREPL_SEED"] = str(opts.seed)
    if "BLOCKREPL_DEADLINE" not in os.environ:
        if opts.duration is not None:
            budget = opts.duration + 240  # the last round's own time, and its convergence
        elif opts.short:
            budget = 85                   # as the e2e tests (CI)
        else:
            budget = 60 * opts.rounds + 120
        os.environ["BLOCKREPL_DEADLINE"] = str(int(budget))

    def body(case):
        H.require_nbd_module()
        H.require_tools("socat", "delay")
        H.log(f"soak: seed {case.seed}, "
              f"{opts.rounds if opts.rounds is not None else 'unbounded'} rounds, time budget "
              f"{opts.duration if opts.duration is not None else 'none'} s, volume {opts.size}, "
              f"deadline {os.environ['BLOCKREPL_DEADLINE']} s")
        soak = Soak(case, opts)
        try:
            soak.run()
        finally:  # the figures so far, also when a round failed (then exit 1, dir kept)
            soak.report()
        H.check(soak.divergent == 0, f"{soak.divergent} divergent bytes")

    H.main(body, name="soak", default_seed=opts.seed)


if __name__ == "__main__":
    main()
