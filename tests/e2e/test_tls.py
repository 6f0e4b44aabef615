#!/usr/bin/python3
"""Mutual TLS on the replication stream: right peers pair, wrong ones are refused, renewal is live.

Certificates come from deploy/tls/make-certs.sh: CA A signs "primary.test" and "secondary.test"
(both with IP SAN 127.0.0.1) and "intruder.test"; CA B signs "rogue.test".
1. A pair with --tls-cert/--tls-key/--tls-ca on both sides and --peer-name each way (secondary
   accepts only primary.test; primary insists on secondary.test): random writes, in_sync, stores
   equal; both logs say "mutual TLS".
2. Wrong peers never get a byte in: a primary presenting intruder.test (same CA, wrong name) is
   refused by name ("wrong peer", in the primary's last_error); a primary with rogue.test from
   CA B, and a plaintext primary, fail the TLS handshake; a primary with the valid primary.test
   certificate but another volume (its own bitmap file: another volume UUID) is refused as
   "wrong volume". Each time the secondary's applied_seq and its store do not change.
3. Renewal without dropping data: under a write load, primary.test's certificate and key are
   replaced by a newly issued pair (same name, new key) and the primary gets SIGHUP: it logs the
   check, keeps replicating, and after `replctl disconnect` + `connect` (a new TLS handshake) the
   secondary logs the renewed certificate's SHA-256 fingerprint (the old and the new one carry the
   same name), and the pair is in sync and the stores equal. A key file that is empty for a
   moment and then corrupt (+ SIGHUP) is reported as an error, never taken: the agent keeps
   serving, and a new handshake (disconnect + connect) still presents the last good certificate.
4. Plaintext off loopback is refused at start (exit 2, names --insecure), accepted with
   --insecure with a loud warning; a partial TLS flag set and a key that does not match its
   certificate are refused with the file named.
"""
import os
import random
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SIZE = 32 * H.MiB
MAKE_CERTS = H.Path(__file__).resolve().parents[2] / "deploy" / "tls" / "make-certs.sh"


def tls_flags(certs, name, peer=None, ca="a"):
    flags = [f"--tls-cert={certs}/{ca}/{name}.crt", f"--tls-key={certs}/{ca}/{name}.key",
             f"--tls-ca={certs}/{ca}/ca.crt"]
    return flags + ([f"--peer-name={peer}"] if peer else [])


def fingerprint(cert):
    """The SHA-256 fingerprint as openssl prints it (AB:CD:...)."""
    out = H.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert]).stdout
    return out.strip().split("=", 1)[1]


def presented(sec, cert):
    """How many handshakes the secondary logged with exactly this certificate of the primary."""
    fp = fingerprint(cert)
    return sum(1 for line in sec.proc.tail(100000).splitlines()
               if "presented certificate" in line and fp in line)


def write_some(uri, rng, n=40):
    h = H.nbd_connect(uri)
    for _ in range(n):
        h.pwrite(rng.randbytes(4096), rng.randrange(0, SIZE // 4096) * 4096)
    h.flush()
    h.shutdown()


def body(case):
    H.require_tools("openssl")
    rng = random.Random(case.seed)
    certs = case.path("certs")
    H.run([MAKE_CERTS, certs / "a", "primary.test,IP:127.0.0.1", "secondary.test,IP:127.0.0.1",
           "intruder.test,IP:127.0.0.1"])
    H.run([MAKE_CERTS, certs / "b", "rogue.test,IP:127.0.0.1"])

    # ---- 1. a mutual-TLS pair ---------------------------------------------------------------
    sec = case.secondary(volume="sec", size="32M",
                         extra=tls_flags(certs, "secondary.test", peer="primary.test"))
    prim = case.primary(sec.port, volume="sec", size="32M",
                        extra=tls_flags(certs, "primary.test", peer="secondary.test"))
    H.wait_in_sync(prim, secondary=sec)
    write_some(prim.uri, rng)
    H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    for agent in (prim, sec):
        H.check("replication over mutual TLS" in agent.proc.tail(50), f"{agent.name} logs TLS")
    H.check(presented(sec, certs / "a" / "primary.test.crt") >= 1,
            "the secondary logs which certificate the primary presented")
    H.check(fingerprint(certs / "a" / "secondary.test.crt") in prim.proc.tail(100000),
            "the primary logs which certificate the secondary presented")
    prim.stop()

    # ---- 2. wrong peers -----------------------------------------------------------------------
    def refused(name, flags, expect_in_error, bitmap="memory"):
        before = sec.status()["applied_seq"]
        digest = H.file_hash(sec.store)
        p = case.primary(sec.port, volume="sec", store=case.path(f"{name}.img"), size="32M",
                         bitmap=bitmap, extra=flags, name=name)
        st = H.wait_for(lambda: expect_in_error in p.status()["last_error"] and p.status(), 20,
                        f"{name}: last_error mentions {expect_in_error!r}", procs=[p.proc])
        H.check(st["connection"] != "connected", f"{name} must not be connected")
        H.log(f"{name} refused: {st['last_error']}")
        p.stop()
        H.check_eq(sec.status()["applied_seq"], before, f"{name}: nothing applied")
        H.check_eq(H.file_hash(sec.store), digest, f"{name}: secondary store unchanged")

    refused("intruder", tls_flags(certs, "intruder.test", peer="secondary.test"), "wrong peer")
    refused("rogue", tls_flags(certs, "rogue.test", ca="b"), "cannot connect")
    refused("plain", [], "cannot connect")
    # The right certificate, the right volume name and size, but another volume (UUID).
    refused("othervolume", tls_flags(certs, "primary.test", peer="secondary.test"),
            "wrong volume", bitmap=str(case.path("othervolume.bm")))

    # ---- 3. renewal under load ---------------------------------------------------------------
    prim.start()
    H.wait_in_sync(prim, secondary=sec)
    load = H.Load(case, prim.uri, SIZE, case.seed + 1, qd=8)
    load.wait_progress(100, procs=[prim.proc, sec.proc])
    renewed = certs / "renewed"
    renewed.mkdir()
    for f in ("ca.crt", "ca.key"):
        shutil.copy(certs / "a" / f, renewed / f)
    H.run([MAKE_CERTS, renewed, "primary.test,IP:127.0.0.1"])
    old_cert = (certs / "a" / "primary.test.crt").read_bytes()
    old_fingerprint = fingerprint(certs / "a" / "primary.test.crt")
    for f in ("primary.test.key", "primary.test.crt"):
        shutil.copy(renewed / f, certs / "a" / (f + ".new"))
        os.replace(certs / "a" / (f + ".new"), certs / "a" / f)
    H.check((certs / "a" / "primary.test.crt").read_bytes() != old_cert, "certificate replaced")
    renewed_cert = renewed / "primary.test.crt"
    H.check(fingerprint(renewed_cert) != old_fingerprint, "the renewal is another certificate")
    H.check_eq(presented(sec, renewed_cert), 0, "the renewed certificate before any handshake")
    prim.proc.popen.send_signal(signal.SIGHUP)
    H.wait_for(lambda: "SIGHUP: volume 'sec': certificates" in prim.proc.tail(20), 10,
               "primary logs the SIGHUP check")
    load.wait_progress(100, procs=[prim.proc, sec.proc])
    time.sleep(2.5)  # the agent re-reads the files every second, gRPC its checked copies too
    r = H.replctl(prim.admin, "disconnect")
    H.check_eq(r.returncode, 0, f"disconnect: {r.stderr}")
    r = H.replctl(prim.admin, "connect", "--timeout", "30")
    H.check_eq(r.returncode, 0, f"connect with the renewed certificate: {r.stderr}")
    # Both certificates name primary.test and come from one CA, so only the fingerprint shows
    # that the new handshake used the renewed one.
    H.wait_for(lambda: presented(sec, renewed_cert) >= 1, 10,
               "the secondary saw the renewed certificate", procs=[prim.proc, sec.proc])
    load.wait_progress(100, procs=[prim.proc, sec.proc])
    load.stop()
    H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    # A key file caught empty, then garbage: gRPC's watcher only ever sees the checked copies,
    # so the agent neither takes the broken set nor dies on it (gRPC 1.51 aborted on an empty
    # key), and a new handshake still uses the last good certificate.
    key_file = certs / "a" / "primary.test.key"
    handshakes_with_renewed = presented(sec, renewed_cert)
    good_key = key_file.read_bytes()
    key_file.write_text("")
    time.sleep(1.5)
    key_file.write_text("garbage\n")
    prim.proc.popen.send_signal(signal.SIGHUP)
    H.wait_for(lambda: "not a PEM private key" in prim.proc.tail(20), 10,
               "a broken renewal is reported")
    H.wait_for(lambda: "were not taken" in prim.proc.tail(40), 10,
               "the watcher keeps the previous certificates")
    r = H.replctl(prim.admin, "disconnect")
    H.check_eq(r.returncode, 0, f"disconnect: {r.stderr}")
    r = H.replctl(prim.admin, "connect", "--timeout", "30")
    H.check_eq(r.returncode, 0, f"reconnect with the last good certificate: {r.stderr}")
    H.wait_for(lambda: presented(sec, renewed_cert) > handshakes_with_renewed, 10,
               "the new handshake presented the last good (renewed) certificate",
               procs=[prim.proc, sec.proc])
    write_some(prim.uri, rng, 10)
    H.wait_in_sync(prim, secondary=sec)
    H.assert_same_files(prim.store, sec.store)
    H.check(prim.proc.popen.poll() is None, "the primary is still running")
    key_file.write_bytes(good_key)

    # ---- 4. start-up checks -----------------------------------------------------------------
    def start_fails(argv, code, needle):
        r = H.run(argv, check_rc=False, timeout=20)
        H.check(r.returncode == code and needle in r.stderr,
                f"{' '.join(map(str, argv[:1]))}: exit {r.returncode} (want {code}), "
                f"stderr {r.stderr!r} (want {needle!r})")
        H.log(f"refused at start: {r.stderr.strip()}")

    base = [H.BIN / "repl-secondary", "--volume=x", f"--store={case.path('x.img')}", "--size=1M",
            f"--admin-socket={case.path('x.sock')}"]
    start_fails(base + [f"--listen=0.0.0.0:{H.free_port()}"], 2, "--insecure")
    start_fails(base + [f"--listen=127.0.0.1:{H.free_port()}",
                        f"--tls-cert={certs}/a/secondary.test.crt"], 2, "all of --tls-cert")
    start_fails(base + [f"--listen=127.0.0.1:{H.free_port()}",
                        f"--tls-cert={certs}/a/secondary.test.crt",
                        f"--tls-key={certs}/b/rogue.test.key", f"--tls-ca={certs}/a/ca.crt"], 1,
                "is not the private key of")
    start_fails(base + [f"--listen=127.0.0.1:{H.free_port()}",
                        f"--tls-cert={certs}/b/rogue.test.crt",
                        f"--tls-key={certs}/b/rogue.test.key", f"--tls-ca={certs}/a/ca.crt"], 1,
                "does not chain to the CA")
    start_fails([H.BIN / "repl-primary", "--volume=x", f"--store={case.path('y.img')}",
                 "--size=1M", "--secondary=192.0.2.1:7000", f"--nbd-listen=127.0.0.1:{H.free_port()}",
                 f"--admin-socket={case.path('y.sock')}", "--bitmap=memory"], 2, "--insecure")
    insecure = case.secondary(volume="x", store=case.path("x.img"), size="1M",
                              port=H.free_port(), name="insecure", start=False)
    insecure.argv = [str(a).replace("--listen=127.0.0.1:", "--listen=0.0.0.0:")
                     for a in insecure.argv]
    insecure.argv.append("--insecure")
    insecure.start()
    H.check("WITHOUT ENCRYPTION" in insecure.proc.tail(10), "--insecure warns loudly")
    insecure.stop()


if __name__ == "__main__":
    H.main(body)
