#!/usr/bin/python3
"""The CPU floor of a 1 MiB write on this machine: unreplicated, and replicated to a replica on
the same host, from what each unavoidable step costs here, measured alone.

    tests/bench/copy_floor.py [--gib N] [--reps N] [--dir DIR] [--cores N] [--json FILE]

compare.py runs every target on one machine: fio, the primary and the replica share its cores.
When a run keeps the cores busy (compare.py's "host busy" near 100%), its rate is the cores
divided by the CPU everything spends per GiB. This measures the steps no implementation can skip,
each on its own, as CPU seconds per GiB (user + system of the process doing it):

  tcp_send, tcp_recv   one loopback TCP hop in 1 MiB blocks (socat; the sender's cost of reading
                       /dev/zero measured alone and taken off)
  pagecache_write      1 MiB buffered pwrites over a file already written (fio psync, a file of
                       --gib GiB rewritten once per repetition after a sync: the page cache as
                       compare.py --files written leaves it; below the dirty limit, so it measures
                       the copy more than the kernel's throttling)
  xxh3                 the payload checksum over memory not in the CPU cache
                       (tests/bench/xxh3_speed, built if missing)

and adds them up the way each target's data flows:

  unreplicated (nbdkit, repl-off): fio's NBD send, the server's receive, its page cache write
  replicated, same host:           the same, plus the primary's checksum and stream send, and the
                                   replica's stream receive, checksum and page cache write

The floor's best rate is cores / floor; the best ratio of replicated to unreplicated is the two
floors' inverse ratio. Writeback to the disk (the kernel's flusher threads) is in neither: both
targets pay it, and compare.py does not charge it either. Prints a table; --json writes it too.
Not a CI test.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import free_port, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 1 << 20


def wait_cpu(p):
    """Waits for process `p`; returns its user + system CPU seconds (with its waited-for
    children). Raises if it failed."""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"floor: {p.args[0]} failed ({p.returncode})")
    return usage.ru_utime + usage.ru_stime


def child_cpu(argv, **kw):
    """Runs argv to completion; returns its CPU seconds (wait_cpu)."""
    return wait_cpu(subprocess.Popen(argv, **kw))


def listening(port):
    """A TCP listener on `port`, seen without connecting (socat's listener takes one connection
    only, so a probe would use it up)."""
    return bool(subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                               text=True).stdout.strip())


def tcp_hop(gib):
    """CPU s/GiB of sending and of receiving `gib` GiB over one loopback TCP connection."""
    port = free_port()
    nbytes = gib << 30
    receiver = subprocess.Popen(["socat", "-u", f"-b{BLOCK}",
                                 f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "OPEN:/dev/null"])
    try:
        wait_for(lambda: listening(port), 10, "socat's listener", poll=0.05)
        send = child_cpu(["socat", "-u", f"-b{BLOCK}", f"OPEN:/dev/zero,readbytes={nbytes}",
                          f"TCP:127.0.0.1:{port}"])
        recv = wait_cpu(receiver)
    finally:
        if receiver.returncode is None:
            receiver.kill()
            receiver.wait()
    # What the sender spent reading /dev/zero is not the hop's.
    zero = child_cpu(["socat", "-u", f"-b{BLOCK}", f"OPEN:/dev/zero,readbytes={nbytes}",
                      "OPEN:/dev/null"])
    return (send - zero) / gib, recv / gib


def pagecache_write(path, gib):
    """CPU s/GiB of 1 MiB buffered writes over `path` (already written, `gib` GiB), once."""
    out = path.with_suffix(".json")
    child_cpu(["fio", "--name=floor", f"--filename={path}", f"--size={gib}G", "--rw=write",
               f"--bs={BLOCK}", "--ioengine=psync", "--output-format=json", f"--output={out}"],
              stdout=subprocess.DEVNULL)
    job = json.load(open(out))["jobs"][0]
    cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
    return cpu / (job["write"]["io_bytes"] / 2**30)


def xxh3_streaming():
    """CPU s/GiB of XXH3 (the agents' dispatch) over 1 MiB pieces not in the CPU cache."""
    tool = ROOT / "build" / "bin" / "xxh3_speed"
    if not tool.exists():
        subprocess.run(["cmake", "--build", ROOT / "build", "--target", "xxh3_speed"], check=True,
                       stdout=subprocess.DEVNULL)
    out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():  # "dispatch   1 MiB   streaming   9.7   108545"
        f = line.split()
        if f[:4] == ["dispatch", "1", "MiB", "streaming"]:
            return 2**30 / (float(f[4]) * 1e9)
    raise SystemExit(f"floor: no 1 MiB streaming line in xxh3_speed's output:\n{out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=int, default=1, help="GiB per measurement (default 1, as "
                    "compare.py's --size)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions, the median counts")
    ap.add_argument("--dir", help="where the page cache test file goes (default: a temp dir "
                    "beside compare.py's, under $TMPDIR)")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--json")
    a = ap.parse_args()
    subprocess.run([ROOT / "scripts" / "install-deps.sh", "--bench"], check=True,
                   stdout=subprocess.DEVNULL)

    sends, recvs, writes = [], [], []
    with tempfile.TemporaryDirectory(prefix="blockrepl-floor.", dir=a.dir) as d:
        img = Path(d) / "img"
        # A file full of data first, as compare.py --files written makes its files.
        child_cpu(["fio", "--name=fill", f"--filename={img}", f"--size={a.gib}G", "--rw=write",
                   f"--bs={BLOCK}", "--ioengine=psync", "--end_fsync=1"], stdout=subprocess.DEVNULL)
        for rep in range(a.reps):
            s, r = tcp_hop(a.gib)
            sends.append(s)
            recvs.append(r)
            os.sync()  # no writeback of the last pass during this one
            writes.append(pagecache_write(img, a.gib))
            print(f"  rep {rep + 1}: tcp send {s:.3f}, tcp recv {r:.3f}, page cache write "
                  f"{writes[-1]:.3f} CPU s/GiB", file=sys.stderr)
    step = {"tcp_send": statistics.median(sends), "tcp_recv": statistics.median(recvs),
            "pagecache_write": statistics.median(writes), "xxh3": xxh3_streaming()}
    unreplicated = step["tcp_send"] + step["tcp_recv"] + step["pagecache_write"]
    primary_extra = step["xxh3"] + step["tcp_send"]
    replica = step["tcp_recv"] + step["xxh3"] + step["pagecache_write"]
    replicated = unreplicated + primary_extra + replica
    gb_s = lambda floor: a.cores / floor * 2**30 / 1e9  # noqa: E731

    print("| step (1 MiB blocks) | CPU s/GiB |")
    print("|---|---:|")
    for k, v in step.items():
        print(f"| {k} | {v:.3f} |")
    print()
    print(f"| path | CPU s/GiB on the machine | best MB/s on {a.cores} cores |")
    print("|---|---:|---:|")
    print(f"| unreplicated: fio send + server receive + page cache | {unreplicated:.2f} | "
          f"{gb_s(unreplicated) * 1000:.0f} |")
    print(f"| replicated, replica on the same host: + primary's checksum and send "
          f"({primary_extra:.2f}) + replica's receive, checksum, page cache ({replica:.2f}) | "
          f"{replicated:.2f} | {gb_s(replicated) * 1000:.0f} |")
    print()
    print(f"best replicated / unreplicated on one {a.cores}-core host: "
          f"{unreplicated / replicated:.2f}x")
    print(f"the same with the replica on another host (the primary's side only): "
          f"{unreplicated / (unreplicated + primary_extra):.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "cores": a.cores, "gib": a.gib, "reps": a.reps, "steps_cpu_s_per_gib": step,
            "samples": {"tcp_send": sends, "tcp_recv": recvs, "pagecache_write": writes},
            "floor_cpu_s_per_gib": {"unreplicated": unreplicated, "replicated_same_host":
                                    replicated, "primary_only": unreplicated + primary_extra},
            "best_ratio_same_host": unreplicated / replicated,
            "best_ratio_replica_elsewhere": unreplicated / (unreplicated + primary_extra)},
            indent=1))


if __name__ == "__main__":
    main()
