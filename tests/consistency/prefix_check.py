#!/usr/bin/python3
"""Prefix-consistency checker: cut the replication at random moments and check that the
secondary's image is always a state the primary's disk was in at some flush.

Run: /usr/bin/python3 tests/consistency/prefix_check.py [--cycles N] [--seed S] [--short]
     [--cycle-seed C --first-cycle N] [--inject-violation]
Environment as for tests/e2e (BLOCKREPL_BIN, BLOCKREPL_TMP, BLOCKREPL_KEEP, BLOCKREPL_DEADLINE).
Exit: 0 no violation, 1 a violation (or the run itself failed), 77 a tool is missing.

The workload (one fresh pair per cycle)
---------------------------------------
A pair on loopback (16 MiB sparse stores, --assume-clean, --bitmap=FILE,65536,1) with a WAN proxy
(harness.Wan: socat + delay, 0-3 ms each way) between primary and secondary. Per cycle, seeded:
the number of slots (32..4096 4 KiB slots spread over the volume), group sizes, libnbd queue
depth, --async window, --max-epoch-writes (8, 64 or 2048: the primary also closes epochs on its
own), the cut kind and the cut moment.

The writer (libnbd, one connection) writes numbered *records*: record r is one 4 KiB block
(magic, cycle id, r, its group g, its slot, padding derived from those, SHA-256 of all that) at
slot s(r), chosen at random with half of the records in a small hot set, so later records
overwrite earlier ones. Records go in *groups* 1, 2, 3, ...: the writes of group g are issued
with up to QD requests in flight (aio_pwrite), then the writer waits for all of them, issues a
FLUSH (aio_flush) and waits for it before group g+1 begins. Two writes to the same slot are never
in flight together: the second waits for the first's reply, so their order is the primary's
order too. The model keeps, per slot, the records written to it in order, and per group whether
its flush was issued / completed.

Cut kinds (round robin, so a short run covers each combination): kill -9 of the primary, kill -9
of the secondary, or a link cut (the WAN proxy's process group killed). Two phases alternate:
- steady: one cut after a random number of submitted writes (mid-group) or right after a FLUSH
  was issued (before its reply);
- resync: first a cut of any kind (a link cut or a secondary kill: the writer keeps going and
  the primary only marks its chunks; a primary kill: the writes that were in flight are settled
  against the primary's own disk, those found there count as written, the others as never
  written, since the primary writes locally before it streams), which is then healed: the link
  restored or the secondary restarted (then `replctl connect` skips the backoff), or the primary
  restarted on its bitmap file with the writer reconnecting as soon as its NBD port answers. A
  resync starts (rate-limited to 2 or 8 MiB/s in some cycles so it lasts), the writer keeps
  writing, and the final cut comes 0-1.5 s after the reconnect: before, during or after the
  resync.
After a secondary kill or a link cut the writer finishes 0-3 more groups (the primary keeps
serving); after a primary kill the writes in flight are of unknown fate.

What is checked (the "prefix" rule)
-----------------------------------
DESIGN.md promises: the secondary applies the writes of one epoch (between two barriers) in any
order that keeps overlapping writes in order and never applies a write of epoch N+1 before all of
epoch N is durable, so its image is a state the primary's disk had at a barrier; barriers are
the client's FLUSHes plus the epochs the primary closes on its own (every --max-epoch-writes
writes, after 20 ms idle, every 2 s). The client cannot see where the primary put its own
barriers inside a group, nor the order it gave to writes that were in flight together, and a
secondary that dies mid-epoch legitimately holds part of that epoch. So the check is at the
granularity of client flushes, and exactly this:

  With S_k the image after flush k (S_0 = all zeroes) and W_{k+1} the writes of group k+1 that
  were submitted, the image must satisfy, for SOME k in 0..(groups started):
    every slot holds either its value in S_k or the record of one of the writes W_{k+1} made to
    that slot, and every byte outside the slots is zero.
  Hence: no record of group k+2 or later, and no slot older than S_k, i.e. nothing newer
  without everything older. Any block that is not zero and not exactly a record this cycle
  wrote to that slot (torn, misplaced, foreign) is a violation too.

It is evaluated per slot as an interval of admissible k: a slot holding record r of group g,
next overwritten by a record of group g', admits k in [g-1, g'-1] (g'-1 = infinity if r is the
slot's last record); a zero slot first written in group g' admits [0, g'-1]. The image passes
iff the intersection of all intervals is not empty; a violation names the two slots that
conflict (one holding a record that forces k >= a, one still holding a record that was
overwritten in group b+1 <= a, so k <= b < a).

Which image is checked: the secondary is stopped (SIGTERM) or already dead and its store file is
read directly. If its meta file (STORE.meta) says consistent=0 (it was cut mid-resync), the
promise is only that `repl-secondary --rollback-resync` restores a consistent image: that is
run (the meta must say undo_valid=1, else it is a violation: an inconsistent image that cannot
be made consistent) and the rolled-back image is checked (the raw one is only reported). After a
kill -9 of the primary its own store is also checked, with k >= the number of flushes it
completed (acknowledged flushes are on its disk).

Then the cycle checks that the pair reconverges: what was killed is restarted (the link
restored), `replctl connect`, wait for in_sync, both stopped cleanly, the stores must be equal,
and equal to the model's final state when the primary was never killed.

The check can fail: every run first checks synthetic images built from a model (states after a
flush, with partial next groups: must pass; an out-of-order record swapped in, a stale slot, a
torn block: must fail), and --inject-violation swaps out-of-order records into each real image
before the check (an overwritten record into one slot, a record of a later group into another):
that run must report a violation in every cycle (and exit 1).

On a violation the cycle's directory is kept (stores, meta, undo log, the image checked, the
raw image before a rollback, model.json with every record's group/slot/state, the agents' logs,
violation.txt) and the command to rerun that cycle is printed (--cycle-seed C --first-cycle N
--cycles 1; the cut's timing, hence the exact interleaving, still varies).
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import harness as H  # noqa: E402

SIZE = 16 * H.MiB
BLOCK = 4096
CHUNK = 64 * H.KiB
VOLUME = "pc"
MAGIC = b"PFXCHK01"
HEADER = struct.Struct("<8sQQQQ")  # magic, cycle id, record, group, slot
PAD_LEN = BLOCK - HEADER.size - 32
ZERO_BLOCK = bytes(BLOCK)
INF = float("inf")
KINDS = ("kill9-primary", "kill9-secondary", "link-cut")
PHASES = ("steady", "resync")
PRE_KINDS = ("link-cut", "kill9-secondary", "kill9-primary")


# ----------------------------------------------------------------------------------------------
# records and the model


def make_record(cycle_id, rec, group, slot):
    head = HEADER.pack(MAGIC, cycle_id, rec, group, slot)
    seed = hashlib.blake2b(head, digest_size=64).digest()
    pad = (seed * (PAD_LEN // 64 + 1))[:PAD_LEN]
    return head + pad + hashlib.sha256(head + pad).digest()


class Model:
    """What the writer did: records (group, slot, state), per-slot write order, groups."""

    def __init__(self, cycle_id, nslots, size=SIZE):
        self.cycle_id, self.nslots, self.size = cycle_id, nslots, size
        self.stride = max(BLOCK, (size // nslots) // BLOCK * BLOCK)
        self.rec_group, self.rec_slot, self.rec_state, self.rec_pos = [None], [None], [None], [None]
        self.slot_writes = {}
        self.flush = [None]  # flush[g]: None, "issued", "done", "failed"
        self.group_recs = [None]

    # --- building
    def start_group(self):
        self.flush.append(None)
        self.group_recs.append([])
        return len(self.flush) - 1

    @property
    def groups(self):
        return len(self.flush) - 1

    def add_record(self, group, slot):
        rec = len(self.rec_group)
        self.rec_group.append(group)
        self.rec_slot.append(slot)
        self.rec_state.append("submitted")
        w = self.slot_writes.setdefault(slot, [])
        self.rec_pos.append(len(w))
        w.append(rec)
        self.group_recs[group].append(rec)
        return rec

    def offset(self, slot):
        return slot * self.stride

    def block(self, rec):
        return make_record(self.cycle_id, rec, self.rec_group[rec], self.rec_slot[rec])

    def flushes_done(self):
        """The last group whose flush completed (or that a primary restart settled)."""
        return max([g for g in range(1, len(self.flush))
                    if self.flush[g] in ("done", "settled")], default=0)

    def settle(self, img):
        """After a kill -9 of the primary that is followed by a restart: each write whose fate
        is unknown either is on the primary's disk (then the restart's resync carries it) or
        never was written there, hence never sent: it is removed from the model. (At most one
        write per slot is in flight, and it is the slot's last one.) Returns (landed, lost)."""
        landed = lost = 0
        for rec in range(1, len(self.rec_state)):
            if not self.rec_state[rec].startswith("unknown"):
                continue
            slot = self.rec_slot[rec]
            off = self.offset(slot)
            if img[off:off + BLOCK] == self.block(rec):
                self.rec_state[rec] = "landed (found on the primary's disk after its kill)"
                landed += 1
            else:
                w = self.slot_writes[slot]
                H.check(w[-1] == rec, f"model: unknown record {rec} is not slot {slot}'s last")
                w.pop()
                self.rec_state[rec] = "lost (not on the primary's disk after its kill)"
                lost += 1
        for g in range(1, len(self.flush)):
            if self.flush[g] != "done":
                self.flush[g] = "settled"
        return landed, lost

    # --- expected images
    def image(self, k, extra=None):
        """The image after flush k, with `extra` = {slot: record} laid over it."""
        img = bytearray(self.size)
        for slot, recs in self.slot_writes.items():
            last = None
            for r in recs:
                if self.rec_group[r] <= k:
                    last = r
            if extra and slot in extra:
                last = extra[slot]
            if last is not None:
                off = self.offset(slot)
                img[off:off + BLOCK] = self.block(last)
        return img

    def to_json(self):
        return {"cycle_id": self.cycle_id, "nslots": self.nslots, "stride": self.stride,
                "groups": self.groups, "flush": self.flush[1:],
                "records": [{"rec": r, "group": self.rec_group[r], "slot": self.rec_slot[r],
                             "offset": self.offset(self.rec_slot[r]), "state": self.rec_state[r]}
                            for r in range(1, len(self.rec_group))]}

    # --- the check
    def analyze(self, img, min_k=0):
        """Check an image (bytes of the whole volume). Returns a dict with ok, lo, hi (the
        admissible flushes k), problems (strings) and a summary."""
        problems = []
        lo, hi = min_k, self.groups
        lo_why = f"required k >= {min_k}" if min_k else "k >= 0"
        hi_why = f"{self.groups} groups were started"
        mv = memoryview(img)
        outside = bytearray(img)
        holding = {"zero": 0, "record": 0}
        for slot in range(self.nslots):
            off = self.offset(slot)
            blk = bytes(mv[off:off + BLOCK])
            outside[off:off + BLOCK] = ZERO_BLOCK
            recs = self.slot_writes.get(slot, [])
            if blk == ZERO_BLOCK:
                holding["zero"] += 1
                l = 0
                u = self.rec_group[recs[0]] - 1 if recs else INF
                desc = "zeroes"
                nxt = recs[0] if recs else None
            else:
                magic, cid, rec, group, rslot = HEADER.unpack_from(blk)
                if (magic != MAGIC or cid != self.cycle_id or not 0 < rec < len(self.rec_group)
                        or self.rec_slot[rec] != slot or self.rec_group[rec] != group
                        or blk != self.block(rec)):
                    problems.append(
                        f"slot {slot} (offset {off}) holds a block no write of this cycle put "
                        f"there: magic={magic!r} cycle={cid:#x} record={rec} group={group} "
                        f"slot={rslot} (torn, misplaced or foreign); first bytes {blk[:48].hex()}")
                    continue
                holding["record"] += 1
                pos = self.rec_pos[rec]
                l = group - 1
                nxt = recs[pos + 1] if pos + 1 < len(recs) else None
                u = self.rec_group[nxt] - 1 if nxt is not None else INF
                desc = f"record {rec} (group {group})"
            if l > lo:
                lo, lo_why = l, (f"slot {slot} (offset {off}) holds {desc}, so the image "
                                 f"contains part of group {l + 1}: k >= {l}")
            if u < hi:
                hi, hi_why = u, (f"slot {slot} (offset {off}) still holds {desc}, which record "
                                 f"{nxt} of group {u + 1} overwrote: k <= {u}")
        if outside.count(0) != len(outside):
            first = next(i for i in range(0, len(outside), BLOCK)
                         if outside[i:i + BLOCK] != ZERO_BLOCK)
            problems.append(f"non-zero bytes outside every slot, first in block at offset {first}")
        if lo > hi:
            problems.append(f"not a prefix of flushes: {lo_why}; but {hi_why} (newer data "
                            f"present without older)")
        ok = not problems
        return {"ok": ok, "lo": lo, "hi": hi, "lo_why": lo_why, "hi_why": hi_why,
                "problems": problems, "holding": holding,
                "summary": (f"state after flush k in [{lo}, {hi}] (+ part of group k+1) of "
                            f"{self.groups} groups, {self.flushes_done()} flushes completed"
                            if ok else "; ".join(problems))}

    # --- deliberate corruption
    def inject(self, img):
        """Swap out-of-order records into `img` (in place) so that it must fail: a slot X gets
        a record that a later group overwrote (k <= u) and another slot Y gets a record of a
        group > u+1 (k >= that). Returns a description, or None when the model is too small."""
        best = None  # (u, slot X, stale record)
        for slot, recs in self.slot_writes.items():
            for i in range(len(recs) - 1):
                u = self.rec_group[recs[i + 1]] - 1
                if best is None or u < best[0]:
                    best = (u, slot, recs[i])
        if best is None:
            return None
        u, x, stale = best
        for rec in range(len(self.rec_group) - 1, 0, -1):
            if self.rec_group[rec] - 1 > u and self.rec_slot[rec] != x:
                y = self.rec_slot[rec]
                for slot, r in ((x, stale), (y, rec)):
                    off = self.offset(slot)
                    img[off:off + BLOCK] = self.block(r)
                return (f"injected: slot {x} <- record {stale} (group {self.rec_group[stale]}, "
                        f"overwritten in group {u + 1}), slot {y} <- record {rec} (group "
                        f"{self.rec_group[rec]})")
        return None


def self_test(seed):
    """The check on synthetic images: legal states pass, corrupted ones fail."""
    rng = random.Random(seed)
    for t in range(20):
        m = Model(rng.getrandbits(64), rng.choice([8, 64, 512]), size=4 * H.MiB)
        for _ in range(rng.randrange(3, 40)):
            g = m.start_group()
            for _ in range(rng.randrange(1, 20)):
                m.add_record(g, rng.randrange(m.nslots))
            m.flush[g] = "done"
        k = rng.randrange(0, m.groups + 1)
        img = m.image(k)
        r = m.analyze(img)
        H.check(r["ok"] and r["lo"] <= k <= r["hi"],
                f"self-test {t}: the state after flush {k} was rejected: {r}")
        if k < m.groups:  # part of group k+1: per slot, any of its writes there (or none)
            extra = {}
            for rec in m.group_recs[k + 1]:
                if rng.random() < 0.5:
                    extra[m.rec_slot[rec]] = rec
            r = m.analyze(m.image(k, extra))
            H.check(r["ok"] and r["lo"] <= k <= r["hi"],
                    f"self-test {t}: flush {k} + part of group {k + 1} was rejected: {r}")
        bad = bytearray(img)
        what = m.inject(bad)
        if what:
            r = m.analyze(bad)
            H.check(not r["ok"], f"self-test {t}: {what} was NOT reported: {r}")
        # a stale slot: the state after the last flush with one slot rolled back to an
        # overwritten record, while a slot written in the last group keeps its new record
        full = m.image(m.groups)
        last = m.group_recs[m.groups]
        for slot, recs in m.slot_writes.items():
            older = [r for r in recs if m.rec_group[r] < m.groups - 1]
            if older and older[-1] != recs[-1] and m.rec_group[recs[-1]] < m.groups and \
                    any(m.rec_slot[r] != slot for r in last):
                bad = bytearray(full)
                off = m.offset(slot)
                bad[off:off + BLOCK] = m.block(older[-1])
                r = m.analyze(bad)
                H.check(not r["ok"], f"self-test {t}: stale slot {slot} NOT reported: {r}")
                break
        # a torn block
        if m.slot_writes:
            bad = bytearray(full)
            slot = rng.choice(sorted(m.slot_writes))
            off = m.offset(slot) + 2048
            bad[off:off + 16] = b"\xff" * 16
            r = m.analyze(bad)
            H.check(not r["ok"], f"self-test {t}: torn block in slot {slot} NOT reported")
    H.log("self-test: legal images pass; swapped-in, stale and torn records are reported")


# ----------------------------------------------------------------------------------------------
# the writer


class Dead(Exception):
    """The NBD connection to the primary is gone."""


class Writer:
    def __init__(self, uri, model, rng, qd, max_group, pause_p, tick):
        import nbd
        self.nbd = nbd
        self.model, self.rng, self.qd = model, rng, qd
        self.max_group, self.pause_p, self.tick = max_group, pause_p, tick
        self.hot = max(1, model.nslots // 16)
        self.errors = []
        self.submitted = 0
        self.connect(uri)

    def connect(self, uri):
        h = self.nbd.NBD()
        h.connect_uri(uri)
        self.h = h
        self.inflight = {}  # rec -> slot
        self.busy = set()
        self.flush_state = None
        self.dead = None

    def _done(self, rec, err):
        slot = self.inflight.pop(rec, None)
        if err.value != 0:
            # The slot's content is now unknown: never write it again on this connection.
            self.model.rec_state[rec] = f"error {err.value}"
            self.errors.append((rec, err.value))
        else:
            self.busy.discard(slot)
            self.model.rec_state[rec] = "done"
        return 1

    def _flush_done(self, err):
        self.flush_state = "done" if err.value == 0 else "failed"
        return 1

    def _poll(self):
        try:
            self.h.poll(5)
        except self.nbd.Error as e:
            raise Dead(str(e))
        if self.errors:
            raise Dead(f"the primary failed requests: {self.errors[:5]}")
        self.tick("wait")

    def group(self):
        """One group: its writes, then a FLUSH. Raises Dead if the primary went away."""
        m = self.model
        g = m.start_group()
        n = self.rng.randint(1, self.max_group)
        try:
            for _ in range(n):
                slot = (self.rng.randrange(self.hot) if self.rng.random() < 0.5
                        else self.rng.randrange(m.nslots))
                while slot in self.busy or self.h.aio_in_flight() >= self.qd or self.errors:
                    self._poll()
                # In the model before the request exists: libnbd may run the completion
                # callback inside aio_pwrite when the connection is already dead.
                rec = m.add_record(g, slot)
                self.inflight[rec] = slot
                self.busy.add(slot)
                self.h.aio_pwrite(self.nbd.Buffer.from_bytearray(bytearray(m.block(rec))),
                                  m.offset(slot),
                                  completion=lambda err, rec=rec: self._done(rec, err))
                self.submitted += 1
                self.tick("write")
            while self.inflight:
                self._poll()
            self.flush_state = "issued"
            self.h.aio_flush(completion=self._flush_done)
            m.flush[g] = "issued"
            self.tick("flush")
            while self.flush_state == "issued":
                self._poll()
            m.flush[g] = self.flush_state
            if self.flush_state != "done":
                self.errors.append(("flush", g))
                raise Dead(f"the FLUSH of group {g} failed")
        except self.nbd.Error as e:
            raise Dead(str(e))
        except Dead:
            raise
        if self.rng.random() < self.pause_p:
            time.sleep(self.rng.uniform(0.005, 0.05))  # idle: the primary closes epochs itself
        return g

    def died(self, why):
        self.dead = why
        self.errors = []  # requests failed by the primary's death: their fate is unknown
        for rec in range(1, len(self.model.rec_state)):
            if rec in self.inflight or self.model.rec_state[rec].startswith("error") or \
                    self.model.rec_state[rec] == "submitted":
                self.model.rec_state[rec] = "unknown (primary killed)"
        for g in range(1, len(self.model.flush)):
            if self.model.flush[g] == "issued":
                self.model.flush[g] = "unknown (primary killed)"

    def close(self):
        try:
            if self.dead is None:
                self.h.shutdown()
            if hasattr(self.h, "close"):  # libnbd >= 1.16; older ones close on collection
                self.h.close()
        except self.nbd.Error:
            pass


# ----------------------------------------------------------------------------------------------
# one cycle


def read_image(path):
    with open(path, "rb") as f:
        return f.read()


class Cycle:
    def __init__(self, n, cseed, opts):
        self.n, self.seed, self.opts = n, cseed, opts
        rng = self.rng = random.Random(cseed)
        self.kind = KINDS[n % 3]
        self.phase = PHASES[(n // 3) % 2]
        self.nslots = rng.choice([32, 256, 1024, 4096])
        self.max_group = rng.choice([1, 4, 16, 64])
        self.qd = rng.choice([1, 4, 16])
        self.async_n = rng.choice([8, 64, 512])
        self.epoch = rng.choice([8, 64, 2048])
        self.delay = rng.choice([0, 1, 3])
        self.pause_p = rng.choice([0.0, 0.1, 0.5])
        scale = 0.4 if opts.short else 1.0
        if self.phase == "steady":
            self.at_flush = rng.random() < 0.25
            writes = rng.randint(1, int(3000 * scale))
            # a write number, or a group number (cut right after its FLUSH was issued)
            self.cut_at = max(1, writes * 2 // (1 + self.max_group)) if self.at_flush else writes
            self.rate = None
        else:
            self.pre_kind = rng.choice(PRE_KINDS)
            self.pre_at = rng.randint(1, int(1500 * scale))
            self.heal_after = rng.uniform(0.1, 1.0 * scale + 0.1)
            self.cut_after = rng.uniform(0.0, 1.5 * scale)
            self.rate = rng.choice([None, "2M", "8M"])
        self.extra_groups = rng.randint(0, 3)
        self.result = {}

    def describe(self):
        d = (f"kind={self.kind} phase={self.phase} slots={self.nslots} group<={self.max_group} "
             f"qd={self.qd} async={self.async_n} max-epoch-writes={self.epoch} "
             f"delay={self.delay}ms pause_p={self.pause_p}")
        if self.phase == "steady":
            d += (f" cut after {'flush of group' if self.at_flush else 'write'} "
                  f"#{self.cut_at}")
        else:
            d += (f" pre-cut={self.pre_kind} at write #{self.pre_at}, heal after "
                  f"{self.heal_after:.2f}s, final cut {self.cut_after:.2f}s after reconnect, "
                  f"resync rate {self.rate or 'unlimited'}")
        return d

    # --- the cut machinery, driven by the writer's ticks
    def do_cut(self, kind, label):
        if kind == "kill9-primary":
            self.prim.kill9()
        elif kind == "kill9-secondary":
            self.sec.kill9()
        else:
            self.wan.cut()
        H.log(f"cycle {self.n}: {label} cut ({kind}) after {self.writer.submitted} writes, "
              f"group {self.model.groups}")

    def heal(self):
        try:
            if self.pre_kind == "link-cut":
                self.wan.restore()
            else:
                self.sec.restart()
            H.ctl(self.prim, "connect", "--timeout", "15")
            self.heal_done = time.monotonic()
            H.log(f"cycle {self.n}: healed ({self.pre_kind}); reconnected")
        except BaseException as e:  # noqa: BLE001 - re-raised in the writer's thread
            self.heal_error = e

    def tick(self, point):
        st = self.state
        if st == "armed":
            if self.phase == "steady":
                hit = (point == "flush" and self.model.groups >= self.cut_at) if self.at_flush \
                    else (point == "write" and self.writer.submitted >= self.cut_at)
                if hit:
                    self.do_cut(self.kind, "final")
                    self.state = "cut"
            elif point == "write" and self.writer.submitted >= self.pre_at:
                self.do_cut(self.pre_kind, "first")
                self.state = "down"
                self.t_heal = time.monotonic() + self.heal_after
        elif st == "down" and self.pre_kind != "kill9-primary" and \
                time.monotonic() >= self.t_heal:
            self.heal_done = None
            self.heal_error = None
            self.heal_thread = threading.Thread(target=self.heal, daemon=True)
            self.heal_thread.start()
            self.state = "healing"
        elif st == "healing":
            if self.heal_error is not None:
                raise self.heal_error
            if self.heal_done is not None:
                self.t_cut = self.heal_done + self.cut_after
                self.state = "healed"
        elif st == "healed" and time.monotonic() >= self.t_cut:
            try:
                ps = self.prim.status()
                self.result["primary_at_cut"] = (f"{ps['sync_state']}, resync "
                                                 f"{ps['resync_done_chunks']}/"
                                                 f"{ps['resync_total_chunks']} chunks")
            except (H.StatusError, KeyError) as e:
                self.result["primary_at_cut"] = f"status unavailable: {e}"
            self.do_cut(self.kind, "final")
            self.state = "cut"

    # --- the cycle
    def run(self, stats):
        o = self.opts
        rng = self.rng
        case = self.case = H.Case(f"prefix-c{self.n}", self.seed)
        H.log(f"===== cycle {self.n} seed {self.seed}: {self.describe()} (dir {case.dir})")
        self.sec = sec = case.secondary(volume=VOLUME, size=SIZE)
        self.wan = H.Wan(self.delay, sec.port, logdir=case.dir)
        self.bm = case.path("vol.bm")
        extra = [f"--max-epoch-writes={self.epoch}"]
        if self.rate:
            extra.append(f"--resync-rate={self.rate}")
        self.prim = prim = case.primary(self.wan.port, volume=VOLUME, size=SIZE,
                                        bitmap=f"{self.bm},{CHUNK},1", assume_clean=True,
                                        async_n=self.async_n, extra=extra)
        H.wait_in_sync(prim, timeout=30, secondary=sec)
        self.model = model = Model(rng.getrandbits(64), self.nslots)
        self.state = "armed"
        self.writer = w = Writer(prim.uri, model, rng, self.qd, self.max_group, self.pause_p,
                                 self.tick)
        t0 = time.monotonic()
        extra_left = None
        violations = []
        try:
            while True:
                try:
                    w.group()
                except Dead as e:
                    if self.state == "down" and self.pre_kind == "kill9-primary":
                        w.died(str(e))
                        violations += self.primary_restart_midway()
                        continue
                    H.check(self.state == "cut" and self.kind == "kill9-primary",
                            f"cycle {self.n}: the NBD connection died without a primary kill "
                            f"(state {self.state}): {e}")
                    w.died(str(e))
                    break
                if self.state == "cut":
                    extra_left = self.extra_groups if extra_left is None else extra_left - 1
                    if extra_left <= 0:
                        break
                H.check(time.monotonic() - t0 < 60, f"cycle {self.n}: the cut never came "
                        f"(state {self.state})")
        finally:
            w.close()
        H.check(not w.errors, f"cycle {self.n}: the primary failed client requests: "
                f"{w.errors[:10]}")
        self.result.update(writes=w.submitted, groups=model.groups,
                           flushes=model.flushes_done(),
                           seconds=round(time.monotonic() - t0, 2))
        H.log(f"cycle {self.n}: writer: {w.submitted} writes in {model.groups} groups, "
              f"{model.flushes_done()} flushes completed"
              + (f"; stopped by the primary's death ({w.dead})" if w.dead else ""))
        if self.phase == "resync" and getattr(self, "heal_thread", None):
            self.heal_thread.join(30)

        violations += self.check_secondary(stats)
        violations += self.check_primary_after_kill()
        if not o.inject:
            self.reconverge(stats)
        return violations

    def primary_restart_midway(self):
        """The first cut killed the primary: check its disk, settle the writes in flight from
        it, restart it, and let the writer reconnect as soon as the NBD port answers (a client
        that resumes at once: its writes race with the start of the resync)."""
        w, prim, model = self.writer, self.prim, self.model
        img = read_image(prim.store)
        done = model.flushes_done()
        r = model.analyze(img, min_k=done)
        violations = []
        if not r["ok"]:
            violations = self.record_violation(
                [f"primary's own store after the first kill -9 ({done} flushes completed): "
                 f"{r['summary']}"], img, r, name="primary-at-first-kill.img")
        landed, lost = model.settle(img)
        H.log(f"cycle {self.n}: the primary's disk after its kill: {r['summary']}; of the "
              f"writes in flight {landed} landed, {lost} were lost")
        time.sleep(max(0.0, self.t_heal - time.monotonic()))
        w.close()
        prim.restart(wait=False)
        deadline = time.monotonic() + 20
        while True:
            try:
                w.connect(prim.uri)
                break
            except w.nbd.Error:
                H.check(prim.proc.alive(), f"cycle {self.n}: the restarted primary exited: "
                        f"{prim.proc.tail(20)}")
                H.check(time.monotonic() < deadline, "the restarted primary's NBD port never "
                        "answered")
                time.sleep(0.002)
        self.heal_done = time.monotonic()
        self.t_cut = self.heal_done + self.cut_after
        self.state = "healed"
        H.log(f"cycle {self.n}: healed (kill9-primary): primary restarted, writer reconnected")
        return violations

    def check_secondary(self, stats):
        sec, model = self.sec, self.model
        if sec.alive():
            try:
                self.result["secondary_status_consistent"] = sec.status().get("consistent")
            except H.StatusError as e:
                self.result["secondary_status_consistent"] = f"unavailable: {e}"
            sec.stop()
        meta_path = str(sec.store) + ".meta"
        meta = H.read_meta(meta_path)
        self.result["meta"] = {k: meta.get(k) for k in ("consistent", "undo_valid",
                                                        "last_applied_seq")}
        violations = []
        if meta.get("consistent") != "1":
            stats["inconsistent_at_cut"] += 1
            raw = read_image(sec.store)
            r = model.analyze(raw)
            self.result["raw_image"] = r["summary"] if r["ok"] else \
                "not prefix-consistent (allowed: inconsistent until rollback)"
            shutil.copyfile(sec.store, self.case.path("secondary-before-rollback.img"))
            if meta.get("undo_valid") != "1":
                violations.append(f"the secondary is inconsistent (meta {meta}) and has no undo "
                                  f"log: its image cannot be made consistent")
                return self.record_violation(violations, raw, None)
            rr = H.run(sec.argv + ["--rollback-resync"], timeout=60, check_rc=False)
            H.check(rr.returncode == 0, f"--rollback-resync exit {rr.returncode}: "
                    f"{rr.stdout}{rr.stderr}")
            stats["rollbacks"] += 1
            self.result["rolled_back"] = True
            H.log(f"cycle {self.n}: rolled back: {(rr.stdout + rr.stderr).strip()[-200:]}")
        img = bytearray(read_image(sec.store))
        if self.opts.inject:
            what = model.inject(img)
            H.check(what is not None, f"cycle {self.n}: --inject-violation: the model has no "
                    f"overwritten slot and later group to swap in")
            with open(sec.store, "r+b") as f:
                f.write(img)
            H.log(f"cycle {self.n}: {what}")
            self.result["injected"] = what
        r = model.analyze(img)
        self.result["secondary"] = r["summary"]
        self.result["k"] = (r["lo"], r["hi"])
        self.result["holding"] = r["holding"]
        if not r["ok"]:
            violations.append(f"secondary image: {r['summary']}")
            return self.record_violation(violations, img, r)
        return violations

    def check_primary_after_kill(self):
        if self.kind != "kill9-primary":
            return []
        img = read_image(self.prim.store)
        self.prim_img_at_kill = img
        done = self.model.flushes_done()
        r = self.model.analyze(img, min_k=done)
        self.result["primary_after_kill"] = r["summary"]
        if not r["ok"]:
            return self.record_violation(
                [f"primary's own store after kill -9 ({done} flushes completed): "
                 f"{r['summary']}"], img, r, name="primary-at-check.img")
        return []

    def record_violation(self, violations, img, r, name="secondary-at-check.img"):
        d = self.case.dir
        (d / name).write_bytes(bytes(img))
        (d / "model.json").write_text(json.dumps(self.model.to_json()))
        with open(d / "violation.txt", "a") as f:
            f.write(f"cycle {self.n} seed {self.seed} (rerun: prefix_check.py --cycle-seed "
                    f"{self.seed} --first-cycle {self.n} --cycles 1"
                    f"{' --short' if self.opts.short else ''}"
                    f"{' --inject-violation' if self.opts.inject else ''}; timing varies)\n"
                    f"{self.describe()}\nresult: {json.dumps(self.result, default=str)}\n")
            for v in violations:
                f.write(f"VIOLATION: {v}\n")
            if r:
                f.write(f"lo={r['lo']} ({r['lo_why']})\nhi={r['hi']} ({r['hi_why']})\n")
        self.keep = True
        for v in violations:
            H.log(f"cycle {self.n}: VIOLATION: {v}")
        return violations

    def reconverge(self, stats):
        prim, sec, wan = self.prim, self.sec, self.wan
        if not sec.alive():
            sec.restart()
        if not wan.proc.alive():
            wan.restore()
        if not prim.alive():
            prim.restart()
        if self.rate:
            H.ctl(prim, "resync", "rate", "0")
        H.ctl(prim, "connect", "--timeout", "15")
        H.wait_in_sync(prim, timeout=60, secondary=sec)
        prim.stop()
        sec.stop()
        wan.proc.stop()
        diff = H.compare_files(prim.store, sec.store)
        H.check(diff is None, f"cycle {self.n}: after reconverging: {diff}")
        pimg = read_image(prim.store)
        if self.kind == "kill9-primary":
            H.check(pimg == self.prim_img_at_kill, f"cycle {self.n}: the primary's store "
                    f"changed across its restart")
        else:
            final = self.model.image(self.model.groups)
            H.check(pimg == bytes(final), f"cycle {self.n}: the primary's store is not the "
                    f"model's final state: {self.model.analyze(pimg)['summary']}")
        stats["reconverged"] += 1
        self.result["reconverged"] = True
        H.log(f"cycle {self.n}: reconverged, stores equal")


# ----------------------------------------------------------------------------------------------
# main


def cleanup_cycle(cyc, keep):
    for p in list(H._ALL_PROCS):
        if p.alive() or p.new_session:
            p.stop(timeout=5)
    H._ALL_PROCS.clear()  # all stopped: later cleanups must not signal reused PIDs
    if cyc is not None and getattr(cyc, "case", None):
        if keep or os.environ.get("BLOCKREPL_KEEP"):
            print(f"(kept {cyc.case.dir})", flush=True)
        else:
            shutil.rmtree(cyc.case.dir, ignore_errors=True)


def dump_cycle_logs(cyc):
    if cyc is None or not getattr(cyc, "case", None):
        return
    for a in cyc.case.agents:
        if a.proc:
            print(f"\n----- {a.name} (pid {a.proc.pid}) log {a.proc.log_path} -----\n"
                  f"{a.proc.tail(60)}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=None, help="cycles to run (default 30)")
    ap.add_argument("--seed", type=int, default=None, help="master seed (default: from time)")
    ap.add_argument("--cycle-seed", type=int, default=None,
                    help="run cycles with exactly this seed (reproduce one cycle)")
    ap.add_argument("--first-cycle", type=int, default=0,
                    help="index of the first cycle (sets kind/phase round robin)")
    ap.add_argument("--short", action="store_true", help="CI: 6 cycles, shorter workloads")
    ap.add_argument("--inject-violation", dest="inject", action="store_true",
                    help="swap an out-of-order record into every checked image: the check must "
                         "report a violation in every cycle")
    opts = ap.parse_args()
    cycles = opts.cycles if opts.cycles is not None else (6 if opts.short else 30)
    seed = opts.seed if opts.seed is not None else \
        int(os.environ.get("BLOCKREPL_SEED", int(time.time()) % 1000000))
    deadline = int(os.environ.get("BLOCKREPL_DEADLINE", 110 if opts.short else 30 * cycles + 60))

    def on_alarm(signum, frame):
        raise H._Deadline(f"deadline of {deadline}s reached (signal {signum})")
    signal.signal(signal.SIGTERM, on_alarm)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(deadline)

    stats = {"cycles": 0, "violations": 0, "rollbacks": 0, "inconsistent_at_cut": 0,
             "reconverged": 0}
    by_kind = {f"{k} ({p})": 0 for p in PHASES for k in KINDS}
    pre_cuts = {k: 0 for k in PRE_KINDS}
    violating = []
    rc = 0
    cyc = None
    t_start = time.monotonic()
    try:
        try:
            H.require_binaries()
            H.require_nbd_module()
            H.require_tools("socat", "delay")
        except H.Skip as e:
            print(f"SKIP: {e}", flush=True)
            sys.exit(77)
        H.log(f"prefix_check: seed {seed}, {cycles} cycles{' (short)' if opts.short else ''}"
              f"{', INJECTING violations' if opts.inject else ''}, binaries {H.BIN}")
        self_test(seed)
        for i in range(cycles):
            n = opts.first_cycle + i
            cseed = opts.cycle_seed if opts.cycle_seed is not None else seed * 1000 + n
            cyc = Cycle(n, cseed, opts)
            cyc.keep = False
            v = cyc.run(stats)
            stats["cycles"] += 1
            by_kind[f"{cyc.kind} ({cyc.phase})"] += 1
            if cyc.phase == "resync":
                pre_cuts[cyc.pre_kind] += 1
            if v:
                stats["violations"] += 1
                violating.append((n, cyc.seed, str(cyc.case.dir), v))
            r = cyc.result
            H.log(f"cycle {n} {'VIOLATION' if v else 'ok'}: {cyc.kind} ({cyc.phase}"
                  f"{', after ' + cyc.pre_kind if cyc.phase == 'resync' else ''}): "
                  f"{r.get('writes')} writes / {r.get('groups')} groups; secondary "
                  f"meta consistent={r['meta'].get('consistent')}"
                  f"{' -> rolled back' if r.get('rolled_back') else ''}; "
                  f"{r.get('secondary')}"
                  + (f"; primary at cut: {r['primary_at_cut']}" if 'primary_at_cut' in r else "")
                  + (f"; primary after kill: {r['primary_after_kill']}"
                     if 'primary_after_kill' in r else ""))
            cleanup_cycle(cyc, cyc.keep)
            cyc = None
    except (Exception, H._Deadline) as e:
        traceback.print_exc()
        print(f"\nFAIL: prefix_check: the run itself failed in cycle "
              f"{cyc.n if cyc else '?'} (seed {cyc.seed if cyc else seed}): {e}", flush=True)
        dump_cycle_logs(cyc)
        rc = 1
        if cyc is not None:
            cleanup_cycle(cyc, keep=True)
    finally:
        signal.alarm(0)
        H._cleanup_all()

    elapsed = time.monotonic() - t_start
    print("\n===== prefix-consistency summary =====", flush=True)
    print(f"seed {seed}; cycles run: {stats['cycles']} in {elapsed:.1f} s", flush=True)
    print("cuts by kind (final cut, phase): " +
          ", ".join(f"{k}: {v}" for k, v in by_kind.items()), flush=True)
    print("first cuts healed before the final one (resync phase): " +
          ", ".join(f"{k}: {v}" for k, v in pre_cuts.items()), flush=True)
    print(f"secondary inconsistent at the cut (mid-resync): {stats['inconsistent_at_cut']}, "
          f"rolled back: {stats['rollbacks']}; reconverged after the cut: "
          f"{stats['reconverged']}", flush=True)
    print(f"violations found: {stats['violations']}", flush=True)
    for n, s, d, v in violating:
        print(f"  cycle {n} (seed {s}, evidence in {d}; rerun: --cycle-seed {s} "
              f"--first-cycle {n} --cycles 1{' --short' if opts.short else ''}):", flush=True)
        for x in v:
            print(f"    {x}", flush=True)
    if stats["violations"]:
        rc = 1
    if opts.inject:
        ok = stats["violations"] == stats["cycles"] and stats["cycles"] > 0
        print(f"--inject-violation: {stats['violations']}/{stats['cycles']} injected cycles "
              f"reported ({'as expected' if ok else 'NOT ALL: the check is blind'})", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
