#!/usr/bin/python3
"""Prometheus /metrics and /healthz on both agents, checked with promtool and a real Prometheus.

A pair (64 MiB, --bitmap=F,65536,1, both with --metrics-listen on 127.0.0.1) syncs.
1. Scrapes of both agents pass `promtool check metrics` (exit 0: no parse or lint problem); every
   sample name starts with blockrepl_ and carries volume="met".
2. N random 4 KiB writes (distinct chunks) and one flush through NBD: the primary's
   nbd_requests_total{command="write"} grows by exactly N, {command="flush"} by 1,
   replicated_writes_total by N, client_write_latency_seconds_count by N, and the ack latency
   histogram by at least N; role/connection/sync state sets say primary/connected/in_sync.
   The secondary's applied_writes_total grows by N.
3. /healthz answers 200 "ok"; POST, PUT and DELETE on /metrics answer 405 (read-only);
   an unknown path 404.
4. The secondary stops: the primary shows peer_connected 0, connection_state{state="connecting"}
   1 and D dirty chunks after D more writes; the secondary restarts: resynced_chunks_total grows
   by exactly D and the stores compare equal.
5. A real Prometheus (Debian's package) scrapes both agents every second: /api/v1/targets shows
   both "up", and a query for blockrepl_replicated_writes_total{volume="met"} returns the
   value the primary reports.
6. Bad input: --metrics-listen=nonsense exits 2 with a usage error; a port already in use makes
   the agent exit 1 with one line naming the address; nothing is written to the store.
"""
import json
import os
import random
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 64 * H.MiB
CHUNK = 64 * H.KiB
VOLUME = "met"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def http(method, url, timeout=5):
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port):
    code, text = http("GET", f"http://127.0.0.1:{port}/metrics")
    H.check_eq(code, 200, f"GET /metrics on {port}")
    return text


def samples(text):
    """{(name, frozenset(labels)): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        H.check(m is not None, f"unparseable sample line: {line!r}")
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name, **labels):
    want = dict(labels, volume=VOLUME)
    for (n, ls), v in s.items():
        if n == name and all((k, str(val)) in ls for k, val in want.items()):
            return v
    raise H.Fail(f"metric {name}{want} not exposed")


def promtool_check(text, who):
    r = H.run(["promtool", "check", "metrics"], input=text, check_rc=False, quiet=True)
    H.check(r.returncode == 0, f"promtool check metrics on the {who}'s scrape: exit "
            f"{r.returncode}\n{r.stdout}{r.stderr}")
    H.log(f"promtool check metrics: {who} clean")


def write_chunks(uri, chunks, rng):
    h = H.nbd_connect(uri)
    for c in chunks:
        h.pwrite(rng.randbytes(4096), c * CHUNK + rng.randrange(0, CHUNK - 4096, 512))
    h.flush()
    h.shutdown()


def body(case):
    H.require_tools("promtool", "prometheus")
    rng = random.Random(case.seed)
    pm, sm = H.free_port(), H.free_port()
    sec = case.secondary(volume=VOLUME, size="64M", extra=[f"--metrics-listen=127.0.0.1:{sm}"])
    prim = case.primary(sec.port, volume=VOLUME, size="64M",
                        bitmap=f"{case.path('met.bm')},65536,1",
                        extra=[f"--metrics-listen=127.0.0.1:{pm}"])
    H.wait_in_sync(prim, secondary=sec)

    # ---- 1. promtool on both scrapes --------------------------------------------------------
    for port, who in [(pm, "primary"), (sm, "secondary")]:
        text = scrape(port)
        promtool_check(text, who)
        for (name, labels) in samples(text):
            H.check(name.startswith("blockrepl_"), f"{who}: {name} lacks the blockrepl_ prefix")
            H.check(("volume", VOLUME) in labels, f"{who}: {name} lacks volume=\"{VOLUME}\"")

    # ---- 2. counters follow the writes ------------------------------------------------------
    before_p, before_s = samples(scrape(pm)), samples(scrape(sm))
    n = 150
    write_chunks(prim.uri, rng.sample(range(SIZE // CHUNK), n), rng)
    H.wait_in_sync(prim, secondary=sec)
    after_p, after_s = samples(scrape(pm)), samples(scrape(sm))

    def grew(s0, s1, name, **labels):
        return value(s1, name, **labels) - value(s0, name, **labels)

    H.check_eq(grew(before_p, after_p, "blockrepl_nbd_requests_total", command="write"), n,
               "nbd write requests counted")
    H.check_eq(grew(before_p, after_p, "blockrepl_nbd_requests_total", command="flush"), 1,
               "nbd flush requests counted")
    H.check_eq(grew(before_p, after_p, "blockrepl_nbd_errors_total", command="write"), 0,
               "nbd write errors")
    H.check_eq(grew(before_p, after_p, "blockrepl_replicated_writes_total"), n,
               "replicated writes")
    H.check_eq(grew(before_p, after_p, "blockrepl_replicated_bytes_total"), n * 4096,
               "replicated bytes")
    H.check_eq(grew(before_p, after_p, "blockrepl_client_write_latency_seconds_count"), n,
               "client write latency samples")
    H.check(grew(before_p, after_p, "blockrepl_replication_ack_latency_seconds_count") >= n,
            "ack latency samples >= writes")
    H.check_eq(value(after_p, "blockrepl_client_write_latency_seconds_bucket", le="+Inf"),
               value(after_p, "blockrepl_client_write_latency_seconds_count"),
               "+Inf bucket == count")
    H.check_eq(grew(before_s, after_s, "blockrepl_applied_writes_total"), n,
               "secondary applied writes")
    H.check_eq(value(after_p, "blockrepl_role", state="primary"), 1, "role primary")
    H.check_eq(value(after_s, "blockrepl_role", state="secondary"), 1, "role secondary")
    H.check_eq(value(after_p, "blockrepl_connection_state", state="connected"), 1, "connected")
    H.check_eq(value(after_p, "blockrepl_sync_state", state="in_sync"), 1, "in_sync")
    H.check_eq(value(after_p, "blockrepl_inflight_writes_limit"), 512, "window limit")
    H.check_eq(value(after_p, "blockrepl_dirty_chunks"), 0, "no dirty chunks")
    # The bitmap daemon may flush (its lazy clear) between two readings: the scrape must fall
    # between the status read before it and the one after.
    flushes_before = prim.status()["bitmap_flushes_total"]
    scraped = value(samples(scrape(pm)), "blockrepl_bitmap_flushes_total")
    flushes_after = prim.status()["bitmap_flushes_total"]
    H.check(flushes_before <= scraped <= flushes_after,
            f"bitmap flushes match replctl status: {flushes_before} <= {scraped} <= {flushes_after}")

    # ---- 3. healthz and read-only ----------------------------------------------------------
    for port in (pm, sm):
        H.check_eq(http("GET", f"http://127.0.0.1:{port}/healthz"), (200, "ok\n"), "/healthz")
        for method in ("POST", "PUT", "DELETE"):
            H.check_eq(http(method, f"http://127.0.0.1:{port}/metrics")[0], 405,
                       f"{method} /metrics")
        H.check_eq(http("GET", f"http://127.0.0.1:{port}/other")[0], 404, "unknown path")

    # ---- 4. disconnect and resync in the metrics --------------------------------------------
    sec.stop()
    H.wait_for(lambda: value(samples(scrape(pm)), "blockrepl_peer_connected") == 0, 20,
               "primary sees the secondary gone")
    d = 37
    resynced0 = value(samples(scrape(pm)), "blockrepl_resynced_chunks_total")
    write_chunks(prim.uri, rng.sample(range(SIZE // CHUNK), d), rng)
    s = samples(scrape(pm))
    H.check_eq(value(s, "blockrepl_connection_state", state="connecting"), 1, "connecting")
    H.check_eq(value(s, "blockrepl_dirty_chunks"), d, "dirty chunks while disconnected")
    sec.start()
    H.wait_in_sync(prim, secondary=sec)
    s = samples(scrape(pm))
    H.check_eq(value(s, "blockrepl_resynced_chunks_total") - resynced0, d, "chunks resynced")
    H.assert_same_files(prim.store, sec.store)

    # ---- 5. a real Prometheus scrapes both ---------------------------------------------------
    prom_port = H.free_port()
    cfg = case.path("prometheus.yml")
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: blockrepl\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{pm}', '127.0.0.1:{sm}']\n")
    H.run(["promtool", "check", "config", cfg])
    prom = H.Proc("prometheus", ["prometheus", f"--config.file={cfg}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}",
                                 f"--storage.tsdb.path={case.path('tsdb')}"], case.dir)
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def targets_up():
        try:
            code, text = http("GET", f"{api}/targets")
        except OSError:
            return False
        if code != 200:
            return False
        active = json.loads(text)["data"]["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    H.wait_for(targets_up, 40, "Prometheus reports both agents up", interval=0.5,
               procs=[prom], ignore=(OSError, KeyError, ValueError))
    expected = value(samples(scrape(pm)), "blockrepl_replicated_writes_total")
    query = urllib.parse.quote(f'blockrepl_replicated_writes_total{{volume="{VOLUME}"}}')

    def queried():
        code, text = http("GET", f"{api}/query?query={query}")
        result = json.loads(text)["data"]["result"] if code == 200 else []
        return len(result) == 1 and float(result[0]["value"][1]) == expected

    H.wait_for(queried, 20, f"Prometheus query returns {expected}", interval=0.5, procs=[prom],
               ignore=(OSError, KeyError, ValueError))
    H.log(f"Prometheus scraped both agents; query returned {expected}")
    prom.stop()

    # ---- 6. bad input --------------------------------------------------------------------------
    bad = H.run([H.BIN / "repl-secondary", "--volume=x", f"--store={case.path('x.img')}",
                 "--size=1M", "--listen=127.0.0.1:1", f"--admin-socket={case.path('x.sock')}",
                 "--metrics-listen=nonsense"], check_rc=False)
    H.check_eq(bad.returncode, 2, "--metrics-listen=nonsense exit code")
    H.check("metrics-listen" in bad.stderr, f"usage error names the flag: {bad.stderr!r}")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_port = busy.getsockname()[1]
    store = case.path("busy.img")
    sec2 = H.free_port()
    r = H.run([H.BIN / "repl-primary", f"--volume={VOLUME}", f"--store={store}", "--size=1M",
               f"--secondary=127.0.0.1:{sec2}", f"--nbd-listen=127.0.0.1:{H.free_port()}",
               f"--admin-socket={case.path('busy.sock')}", "--bitmap=memory",
               f"--metrics-listen=127.0.0.1:{busy_port}"], check_rc=False, timeout=20)
    busy.close()
    H.check_eq(r.returncode, 1, "busy metrics port exit code")
    lines = [l for l in r.stderr.splitlines() if "metrics" in l and "error" in l]
    H.check(len(lines) == 1 and f"127.0.0.1:{busy_port}" in lines[0]
            and "in use" in lines[0], f"one error line naming the address: {r.stderr!r}")
    H.check(store.read_bytes() == bytes(H.MiB), "nothing written to the store")
    H.log(f"busy port refused: {lines[0]}")


if __name__ == "__main__":
    H.main(body)
