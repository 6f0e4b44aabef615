#!/usr/bin/python3
"""Lazy bit clearing (md's DAEMON_SLEEP): bits outlive the write by a whole period, then go, and
a chunk the secondary never acknowledged is never cleared.

A pair (64 MiB, --bitmap=F,65536,1, so DAEMON_SLEEP = 1 s) does its initial sync and its bitmap
empties. The clearing rule gives two time bounds that the test turns into precise assertions
without trusting the machine's speed: a bit is cleared only by the second clearing pass after its
chunk became clean (durable on the secondary), so it stays set >= 1 DAEMON_SLEEP after that; and
it is gone within 2 x DAEMON_SLEEP after that (3 s slack added: 5 s). Each status sample is
timestamped before and after the `replctl status` call, so a slow sample can only make an
assertion inconclusive (the attempt is repeated, at most 3 times), never make it pass or fail
wrongly.

1. 200 distinct chunks (seeded) get one small write each through NBD. A status sample whose
   `replctl` call returned within 0.9 s of sending the last write must show bitmap_bits_set > 0
   (and == 200 if it returned within 0.9 s of sending the FIRST write). Then status is polled
   (samples <= 0.9 s apart): some sample must show dirty_chunks == 0 with bitmap_bits_set > 0
   (clean chunks waiting for lazy clearing: an eager clear on the ack fails here);
   bitmap_bits_set must reach 0; no sample started more than 5 s after the last write's reply may
   still show a set bit, yet the zero must come >= 0.9 s after the last chunk became clean
   (bounded from below by the last write's send time and the last sample still showing a dirty
   chunk, from above by the end of the first sample with no bit set). Then `replctl bitmap
   examine --json F` shows 0 dirty chunks on disk and bitmap_flushes_total grew after the
   all-clean sample (the clear was written to the file).
2. The secondary is frozen (SIGSTOP, no acks); 50 distinct chunks are written. For > 3 x
   DAEMON_SLEEP every sample shows bitmap_bits_set == 50 and dirty_chunks == 50, and the file
   (examine) holds 50 dirty chunks: an unacknowledged chunk is never cleared. SIGCONT: the bits
   reach 0 (none still set in a sample started > 5 s after SIGCONT, none cleared < 0.9 s after
   SIGCONT), the file shows 0 dirty chunks, in_sync, stores equal byte for byte.
"""
import json
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
NCHUNKS = SIZE // CHUNK
SLEEP = 1.0                      # DAEMON_SLEEP in --bitmap=F,65536,1
CLEAR_BOUND = 2 * SLEEP + 3.0    # bits of a clean chunk are gone within this (slack included)
MIN_LINGER = 0.9                 # a clean chunk's bit lives >= 1 DAEMON_SLEEP; margin below it
MAX_GAP = 0.9                    # polls further apart than this could miss the >= 1 s window


def sample(prim):
    """(time before the replctl call, status, time after it)."""
    t0 = time.monotonic()
    st = prim.status()
    return t0, st, time.monotonic()


def examine_json(bm):
    r = H.run([H.BIN / "replctl", "bitmap", "examine", "--json", bm], quiet=True)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise H.Fail(f"examine --json printed invalid JSON ({e}): {r.stdout!r}")


def write_chunks(prim, chunks, rng):
    """One small write inside each chunk. Returns (time the first write was sent, time the last
    write was sent, time the last write was answered): no chunk can be clean before it was sent."""
    h = H.nbd_connect(prim.uri)
    first_sent = None
    try:
        for c in chunks:
            n = rng.choice([4096, 8192, 16384])
            off = c * CHUNK + rng.randrange(0, (CHUNK - n) // 4096 + 1) * 4096
            data = rng.randbytes(n)
            last_sent = time.monotonic()
            if first_sent is None:
                first_sent = last_sent
            h.pwrite(data, off)
        last = time.monotonic()
    finally:
        h.shutdown()
    return first_sent, last_sent, last


def wait_bits_zero(prim, sec, label):
    H.wait_for(lambda: prim.status()["bitmap_bits_set"] == 0, 20,
               f"{label}: bitmap_bits_set == 0", interval=0.1, procs=[prim.proc, sec.proc])


def poll_until_clear(prim, sec, since, label, stop_after=20.0):
    """Samples status until bitmap_bits_set == 0. Returns the list of (t0, st, t1)."""
    samples = []
    deadline = time.monotonic() + stop_after
    while True:
        for p in (prim.proc, sec.proc):
            H.check(p.alive(), f"{label}: {p.name} exited with {p.returncode}")
        s = sample(prim)
        samples.append(s)
        if s[1]["bitmap_bits_set"] == 0:
            return samples
        if time.monotonic() > deadline:
            raise H.Fail(f"{label}: bitmap_bits_set still {s[1]['bitmap_bits_set']} "
                         f"{s[2] - since:.1f} s after the writes (bound {CLEAR_BOUND} s): "
                         f"{H.brief(s[1])}")
        time.sleep(0.05)


def check_clear_bound(samples, since, label):
    """No sample that started later than `since` + CLEAR_BOUND may still show a set bit."""
    late = [s for s in samples if s[1]["bitmap_bits_set"] > 0 and s[0] - since > CLEAR_BOUND]
    if late:
        raise H.Fail(f"{label}: a status call started {late[0][0] - since:.2f} s after the "
                     f"reference point still shows {late[0][1]['bitmap_bits_set']} bits set "
                     f"(must be 0 within 2 x DAEMON_SLEEP + 3 s = {CLEAR_BOUND} s): "
                     f"{H.brief(late[0][1])}")
    last_set = max((s[0] for s in samples if s[1]["bitmap_bits_set"] > 0), default=since)
    H.log(f"{label}: bits reached 0 between {last_set - since:.2f} s and "
          f"{samples[-1][2] - since:.2f} s after the reference point (bound {CLEAR_BOUND} s)")


def check_linger(samples, clean_not_before, label):
    """The last chunk became clean at or after `clean_not_before` (a lower bound: the last write
    was sent then, or a later sample still saw a dirty chunk); its bit must then stay set for at
    least one DAEMON_SLEEP. The zero was seen at the latest by the end of the first sample with no
    bit set: if that is less than MIN_LINGER after the lower bound, the bits were certainly
    cleared too early (slow samples only widen this interval: no false alarm)."""
    lower = max([clean_not_before] + [x[0] for x in samples if x[1]["dirty_chunks"] > 0])
    zero_by = next(x[2] for x in samples if x[1]["bitmap_bits_set"] == 0)
    H.log(f"{label}: the last chunk became clean after t={lower - samples[0][0]:+.2f} s, every "
          f"bit was clear by t={zero_by - samples[0][0]:+.2f} s (relative to the first sample): "
          f"an interval of at most {zero_by - lower:.2f} s, which must be >= {MIN_LINGER} s")
    H.check(zero_by - lower >= MIN_LINGER,
            f"{label}: every bit was cleared at most {zero_by - lower:.2f} s after the last chunk "
            f"became clean: a bit must stay set for a whole DAEMON_SLEEP ({SLEEP} s) after its "
            f"chunk is clean (lazy clearing, two passes)")


def wait_file_clear(bm, label):
    # The in-memory bits change just before their page is written: give the write a moment.
    doc = H.wait_for(lambda: (lambda d: d if d["dirty_chunks"] == 0 else None)(examine_json(bm)),
                     5, f"{label}: `bitmap examine` to show 0 dirty chunks on disk", interval=0.1)
    H.log(f"{label}: examine: dirty_chunks={doc['dirty_chunks']} state={doc['state']}")
    return doc


def phase1_attempt(prim, sec, bm, rng, attempt):
    """True when every check was conclusive and passed; False when a slow sample made one
    inconclusive (the caller retries). Raises Fail on a violated property."""
    label = f"1.{attempt}"
    st = prim.status()
    H.check_eq(st["bitmap_bits_set"], 0, f"{label}: bits set before the writes")
    chunks = rng.sample(range(NCHUNKS), 200)
    H.log(f"{label}: writing 200 distinct chunks: {sorted(chunks)[:12]}...")
    first_sent, last_sent, last = write_chunks(prim, chunks, rng)
    s = sample(prim)
    H.log(f"{label}: burst took {last - first_sent:.3f} s; sample returned "
          f"{s[2] - last_sent:.3f} s after the last write was sent: {H.brief(s[1])}")
    if s[2] - last_sent > MIN_LINGER:
        H.log(f"{label}: the first sample was too slow to be conclusive: retrying")
        return False
    H.check(s[1]["bitmap_bits_set"] > 0,
            f"{label}: bitmap_bits_set == 0 within {s[2] - last_sent:.3f} s of the last write: "
            f"a written chunk's bit must stay set at least one DAEMON_SLEEP ({SLEEP} s) after "
            f"the chunk is clean; {H.brief(s[1])}")
    if s[2] - first_sent <= MIN_LINGER:
        H.check_eq(s[1]["bitmap_bits_set"], len(chunks),
                   f"{label}: bitmap_bits_set {s[2] - first_sent:.3f} s after the first write "
                   f"was sent (no bit can have been cleared yet)")
    H.check(s[1]["bitmap_bits_set"] <= len(chunks),
            f"{label}: more bits set than chunks written: {H.brief(s[1])}")

    samples = [s] + poll_until_clear(prim, sec, last, label)
    gaps = [b[2] - a[0] for a, b in zip(samples, samples[1:])]
    clean_waiting = [x for x in samples
                     if x[1]["dirty_chunks"] == 0 and x[1]["bitmap_bits_set"] > 0]
    H.log(f"{label}: {len(samples)} samples, largest gap {max(gaps):.3f} s; "
          f"{len(clean_waiting)} show dirty_chunks == 0 with bits still set")
    if not clean_waiting:
        if max(gaps) > MAX_GAP:
            H.log(f"{label}: a {max(gaps):.2f} s gap between samples may have hidden the lazy "
                  f"window: retrying")
            return False
        raise H.Fail(f"{label}: bitmap_bits_set went to 0 without any sample showing clean "
                     f"chunks (dirty_chunks == 0) whose bits wait for the lazy clearing; "
                     f"samples at most {max(gaps):.2f} s apart, so the bits were cleared less "
                     f"than one DAEMON_SLEEP after the chunks became clean")
    check_clear_bound(samples, last, label)
    check_linger(samples, last_sent, label)
    w = clean_waiting[0][1]
    H.log(f"{label}: lazy window seen: {H.brief(w)}, bitmap_flushes_total="
          f"{w['bitmap_flushes_total']}")
    wait_file_clear(bm, label)
    after = prim.status()
    H.check(after["bitmap_flushes_total"] > w["bitmap_flushes_total"],
            f"{label}: bitmap_flushes_total did not grow ({w['bitmap_flushes_total']} -> "
            f"{after['bitmap_flushes_total']}) although the lazy clear changed the bits: the "
            f"clear was not written to the file")
    H.log(f"{label}: bitmap_flushes_total {w['bitmap_flushes_total']} -> "
          f"{after['bitmap_flushes_total']}")
    return True


def body(case):
    H.require_nbd_module()
    rng = random.Random(case.seed)
    bm = case.path("vol.bm")
    sec = case.secondary(volume="lazy", size="64M")
    prim = case.primary(sec.port, volume="lazy", size="64M", bitmap=f"{bm},{CHUNK},1")
    st = H.wait_in_sync(prim, timeout=60, secondary=sec)
    H.check_eq(st["daemon_sleep_ms"], 1000, "daemon_sleep_ms")
    wait_bits_zero(prim, sec, "after the initial sync")

    # ---- 1. bits linger >= 1 DAEMON_SLEEP after the ack, then clear within the bound ---------
    for attempt in range(1, 4):
        if phase1_attempt(prim, sec, bm, rng, attempt):
            break
        wait_bits_zero(prim, sec, f"1.{attempt}: before the next attempt")
    else:
        raise H.Fail("1: three attempts in a row were inconclusive (status samples too slow)")
    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.assert_same_files(prim.store, sec.store)

    # ---- 2. a frozen secondary: nothing acked, nothing cleared ------------------------------
    wait_bits_zero(prim, sec, "2: before freezing")
    chunks = rng.sample(range(NCHUNKS), 50)
    H.log(f"2: SIGSTOP {sec.name} pid {sec.proc.pid}; writing 50 chunks: {sorted(chunks)}")
    os.kill(sec.proc.pid, signal.SIGSTOP)
    try:
        _, _, last = write_chunks(prim, chunks, rng)
        held = []
        while True:
            s = sample(prim)
            held.append(s)
            H.check(prim.alive(), f"2: {prim.name} exited")
            H.check(s[1]["bitmap_bits_set"] == 50 and s[1]["dirty_chunks"] == 50,
                    f"2: {s[0] - last:.2f} s after the writes with the secondary frozen: "
                    f"expected 50 bits set and 50 dirty chunks (nothing acked, nothing may be "
                    f"cleared), got {H.brief(s[1])}")
            if s[0] - last > 3 * SLEEP + 0.2:
                break
            time.sleep(0.2)
        H.log(f"2: {len(held)} samples over {held[-1][0] - last:.2f} s: always 50 bits set")
        doc = examine_json(bm)
        H.check_eq(doc["dirty_chunks"], 50, "2: dirty chunks in the file while frozen")
    finally:
        t_cont = time.monotonic()  # nothing can be acked (nor become clean) before this
        if sec.alive():
            os.kill(sec.proc.pid, signal.SIGCONT)
    H.log(f"2: SIGCONT {sec.name}")
    samples = poll_until_clear(prim, sec, t_cont, "2")
    check_clear_bound(samples, t_cont, "2 (after SIGCONT)")
    check_linger(samples, t_cont, "2 (after SIGCONT)")
    wait_file_clear(bm, "2")

    H.wait_in_sync(prim, timeout=30, secondary=sec)
    H.stop_pair_and_compare(prim, sec)


if __name__ == "__main__":
    H.main(body, default_seed=1717)
