#!/usr/bin/python3
"""What --compress costs on incompressible data: primary CPU per GiB and throughput.

For each codec (none, zstd, lz4) and round, a fresh pair on loopback (1 GiB sparse stores,
--bitmap=memory, --assume-clean) takes 1 GiB of 1 MiB sequential writes from fio
(--refill_buffers: fresh random data for every write, truly incompressible) at QD 8. The primary's
CPU time (utime + stime from /proc/PID/stat) is read before and after, including the wait until
the secondary has everything. Codecs take turns within each round. Prints CPU seconds per GiB,
MB/s, and both relative to "none".

    /usr/bin/python3 tests/bench/compression_cpu.py        # BENCH_ROUNDS (default 3)
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness as H  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CODECS = ["none", "zstd", "lz4"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def body(case):
    H.require_tools("fio")
    results = {c: [] for c in CODECS}
    for r in range(ROUNDS):
        order = CODECS if r % 2 == 0 else list(reversed(CODECS))
        for codec in order:
            name = f"{codec}{r}"
            prim, sec = case.pair(size="1G", volume=name, bitmap="memory", assume_clean=True,
                                  extra=[f"--compress={codec}"])
            H.wait_in_sync(prim, secondary=sec)
            c0 = cpu_seconds(prim.proc.pid)
            t0 = time.monotonic()
            report = case.path(f"fio-{name}.json")
            subprocess.run(
                ["fio", "--name=w", "--ioengine=nbd", f"--uri={prim.uri}", "--rw=write",
                 "--bs=1M", "--iodepth=8", "--size=1G", "--refill_buffers",
                 "--output-format=json", f"--output={report}"], capture_output=True, text=True,
                check=True)
            out = report.read_text()
            H.wait_in_sync(prim, timeout=120, secondary=sec)
            cpu = cpu_seconds(prim.proc.pid) - c0
            mbs = json.loads(out)["jobs"][0]["write"]["bw_bytes"] / 1e6
            st = prim.status()
            results[codec].append((cpu, mbs))
            H.log(f"round {r + 1} {codec}: {mbs:.0f} MB/s, primary CPU {cpu:.2f} s/GiB, "
                  f"compressed {st['compression_input_bytes_total']} -> "
                  f"{st['compression_output_bytes_total']} bytes, "
                  f"{time.monotonic() - t0:.1f} s")
            prim.stop()
            sec.stop()
            os.unlink(prim.store)
            os.unlink(sec.store)
    base_cpu = statistics.mean(c for c, _ in results["none"])
    base_mbs = statistics.mean(m for _, m in results["none"])
    print("\n| codec | primary CPU s per GiB | vs none | MB/s | vs none | CPU per round |")
    print("|---|---:|---:|---:|---:|---|")
    for codec in CODECS:
        cpu = statistics.mean(c for c, _ in results[codec])
        mbs = statistics.mean(m for _, m in results[codec])
        per = " / ".join(f"{c:.2f}" for c, _ in results[codec])
        print(f"| {codec} | {cpu:.2f} | {cpu / base_cpu:.2f}x | {mbs:.0f} | {mbs / base_mbs:.2f}x "
              f"| {per} |")


if __name__ == "__main__":
    os.environ.setdefault("BLOCKREPL_DEADLINE", "900")
    H.main(body, name="compression_cpu")
