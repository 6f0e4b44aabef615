#!/usr/bin/python3
"""Writes the fuzzers' seed corpora into tests/fuzz/corpus/<fuzzer>/ (committed; rerun only to
change them). Seeds are valid inputs that reach deep into each target, so mutations start from
the interesting places instead of from random bytes:

  nbd_session_fuzzer     handshakes (GO, INFO, LIST, EXPORT_NAME, ABORT, structured replies)
                         and every request type, with and without the canned handshake;
  replica_stream_fuzzer  a Hello then batches of every op kind, compressed and checksummed;
  bitmap_file_fuzzer     bitmap files written by a real repl-primary (clean stop, kill -9);
  config_file_fuzzer     the agents' example configuration files and small variants.

Usage: tests/fuzz/make_seeds.py [--bin build/bin]   (needs protoc, zstd and lz4 from Debian,
and the built agents for the bitmap seeds)
"""
import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"

# ---------------------------------------------------------------------------------------------
# NBD (client side bytes after the server's greeting)
IHAVEOPT = 0x49484156454F5054
REQUEST_MAGIC = 0x25609513
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 1, 2, 3, 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS = range(8)
FUA, NO_HOLE = 1, 2


def option(opt, payload=b""):
    return struct.pack(">QII", IHAVEOPT, opt, len(payload)) + payload


def go_payload(name=b"", infos=()):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def request(kind, offset=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, kind, cookie, offset, length) + payload


def nbd_seeds():
    flags = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
    go = option(OPT_GO, go_payload())
    traffic = (request(WRITE, 4096, 512, payload=b"\xab" * 512, cookie=1)
               + request(READ, 4096, 512, cookie=2)
               + request(WRITE, 0, 4096, flags=FUA, payload=bytes(range(256)) * 16, cookie=3)
               + request(FLUSH, cookie=4)
               + request(TRIM, 65536, 65536, cookie=5)
               + request(WRITE_ZEROES, 8192, 8192, flags=NO_HOLE, cookie=6)
               + request(CACHE, 0, 4096, cookie=7)
               + request(BLOCK_STATUS, 0, 4096, cookie=8)
               + request(READ, (1 << 20) - 512, 1024, cookie=9)   # past the end: EINVAL
               + request(DISC, cookie=10))
    return {
        "full_go_traffic": b"\x00" + flags + go + traffic,
        "canned_traffic": b"\x01" + traffic,
        "canned_write_unaligned": b"\x01" + request(WRITE, 1, 3, payload=b"xyz") + request(DISC),
        "canned_bad_magic": b"\x01" + struct.pack(">IHHQQI", 0x12345678, 0, READ, 1, 0, 512),
        "info_list_exportname": b"\x00" + flags
        + option(OPT_INFO, go_payload(b"fuzz", (0, 1, 2, 3)))
        + option(OPT_LIST)
        + option(OPT_STRUCTURED_REPLY)
        + option(OPT_LIST_META_CONTEXT, struct.pack(">I", 4) + b"fuzz" + struct.pack(">I", 0))
        + option(OPT_EXPORT_NAME, b"fuzz") + request(READ, 0, 512) + request(DISC),
        "abort": b"\x00" + flags + option(OPT_ABORT),
        "unknown_export": b"\x00" + flags + option(OPT_GO, go_payload(b"nope")) + option(OPT_ABORT),
        "old_client_flags": b"\x00" + struct.pack(">I", 0) + option(OPT_EXPORT_NAME, b""),
    }


# ---------------------------------------------------------------------------------------------
# Replication stream: PrimaryMessage text format -> protoc --encode -> 2-byte length framing
def encode(text):
    r = subprocess.run(["protoc", f"--proto_path={REPO / 'proto'}",
                        "--encode=blockrepl.replication.PrimaryMessage", "replication.proto"],
                       input=text.encode(), capture_output=True, check=True)
    return r.stdout


def frame(messages):
    """Each message: its length (2 bytes, little-endian), where the fuzzer cuts it into two
    slices (1 byte: taken modulo length + 1), the message."""
    out = b""
    for i, m in enumerate(messages):
        assert len(m) < 65536
        out += struct.pack("<HB", len(m), (37 * (i + 1)) % 256) + m
    return out


def pb_bytes(data):
    return '"' + "".join(f"\\{b:03o}" for b in data) + '"'


def replica_seeds():
    hello = encode('hello { volume: "fuzz" size_bytes: 1048576 chunk_size: 65536 '
                   'generation: "gen-1" protocol_version: 1 volume_uuid: "u-1" }')
    payload = bytes(range(256)) * 16
    # data_checksum (XXH3) is left out: a wrong one only reaches the refusal branch
    write = f'ops {{ seq: 1 kind: WRITE offset: 4096 length: 4096 data: {pb_bytes(payload)} }}'
    batch = encode("batch { " + write + " ops { seq: 2 kind: BARRIER } "
                   "ops { seq: 3 kind: TRIM offset: 65536 length: 65536 } "
                   "ops { seq: 4 kind: WRITE_ZEROES offset: 0 length: 512 } "
                   "ops { seq: 5 kind: VERIFY offset: 0 length: 131072 verify_piece: 65536 } }")
    resync = encode("batch { ops { seq: 6 kind: RESYNC_BEGIN } "
                    f"ops {{ seq: 7 kind: RESYNC offset: 131072 length: 4096 data: {pb_bytes(payload)} }} "
                    "ops { seq: 8 kind: RESYNC_ZERO offset: 196608 length: 65536 } }")
    resync_done = encode("batch { ops { seq: 9 kind: RESYNC_DONE } }")
    seeds = {
        "hello_only": frame([hello]),
        "hello_batch": frame([hello, batch]),
        "resync_complete": frame([hello, batch, resync, resync_done]),
        "resync_cut": frame([hello, resync]),
        "wrong_volume": frame([encode('hello { volume: "other" size_bytes: 1048576 }')]),
    }
    # zstd frames from the zstd tool decode like the agents' own (LZ4 is raw blocks: the
    # fuzzer finds that format from the codec field alone).
    if shutil.which("zstd"):
        packed = subprocess.run(["zstd", "-q", "-c"], input=payload, capture_output=True,
                                check=True).stdout
        seeds["compressed_zstd"] = frame([hello, encode(
            "batch { ops { seq: 1 kind: WRITE offset: 0 length: 4096 codec: CODEC_ZSTD "
            f"data: {pb_bytes(packed)} }} }}")])
    return seeds


# ---------------------------------------------------------------------------------------------
# Bitmap files from a real primary (16 MiB volume, 64 KiB chunks; no secondary, so bits stay)
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bitmap_seeds(bin_dir):
    seeds = {}
    if not (bin_dir / "repl-primary").exists():
        print("make_seeds: no repl-primary: bitmap seeds skipped", file=sys.stderr)
        return seeds
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for how in ("clean", "kill9"):
            store, bitmap = d / f"{how}.img", d / f"{how}.bitmap"
            port = free_port()
            p = subprocess.Popen([str(bin_dir / "repl-primary"), "--volume=fuzz", f"--store={store}",
                                  "--size=16M", f"--bitmap={bitmap},65536,5",
                                  f"--secondary=127.0.0.1:{free_port()}",
                                  f"--nbd-listen=127.0.0.1:{port}",
                                  f"--admin-socket={d / (how + '.sock')}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(100):
                    with socket.socket() as s:
                        if s.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    time.sleep(0.1)
                # Debian's python3 has libnbd's module (a pyenv python on PATH may not).
                subprocess.run(["/usr/bin/python3", "-c",
                                "import nbd\nh = nbd.NBD()\n"
                                f"h.connect_uri('nbd://127.0.0.1:{port}/fuzz')\n"
                                "for off in (0, 1 << 20, 5 << 20, (16 << 20) - 4096):\n"
                                "    h.pwrite(b'x' * 4096, off)\nh.flush()"], check=True)
                p.send_signal(signal.SIGTERM if how == "clean" else signal.SIGKILL)
                p.wait(timeout=10)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            # Byte 0 is the fuzzer's mode: as is (0) or with checksums recomputed (1).
            seeds[how] = b"\x00" + bitmap.read_bytes()
            seeds[how + "_fixed_sums"] = b"\x01" + bitmap.read_bytes()
    return seeds


# ---------------------------------------------------------------------------------------------
def config_seeds():
    seeds = {}
    for f in sorted((REPO / "deploy").rglob("*.conf")):
        seeds[f.stem] = f.read_bytes()
    seeds["minimal_primary"] = (b"admin-socket = /tmp/p.sock\nnbd-listen = 127.0.0.1:10809\n"
                                b"[volume a]\nstore = /tmp/a.img\nsecondary = 127.0.0.1:7700\n"
                                b"size = 64M\nbitmap = /tmp/a.bitmap,65536,5\nsync = false\n")
    seeds["minimal_secondary"] = (b"# secondary\nlisten = 127.0.0.1:7700\n"
                                  b"admin-socket = /tmp/s.sock\n[volume a]\n"
                                  b"store = /tmp/a.replica\nsize = 64M\n; comment\n")
    seeds["two_volumes_same_store"] = (b"admin-socket = /tmp/p.sock\n[volume a]\nstore = /x\n"
                                       b"secondary = h:1\n[volume b]\nstore = /x\nsecondary = h:1\n")
    return seeds


def write(fuzzer, seeds):
    out = CORPUS / fuzzer
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    print(f"{fuzzer}: {len(seeds)} seeds in {out.relative_to(REPO)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(REPO / "build" / "bin"))
    args = ap.parse_args()
    write("nbd_session_fuzzer", nbd_seeds())
    write("replica_stream_fuzzer", replica_seeds())
    write("bitmap_file_fuzzer", bitmap_seeds(Path(args.bin)))
    write("config_file_fuzzer", config_seeds())


if __name__ == "__main__":
    main()
