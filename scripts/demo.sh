#!/bin/bash
# README command 1: a replicated pair on this machine, in one command.
#
#   scripts/demo.sh          install missing deps, build, start repl-secondary + repl-primary on
#                            127.0.0.1 with 1 GiB sparse stores under ./var/, wait until in_sync,
#                            self-check with nbdsh, print how to use it
#   scripts/demo.sh status   replctl status of both agents
#   scripts/demo.sh stop     stop both (by PID, SIGTERM then SIGKILL)
#
# Env: DEMO_DIR (default ./var), DEMO_SIZE (1G), DEMO_NBD_PORT (10809), DEMO_REPL_PORT (10810),
#      DEMO_VOLUME (demo), DEMO_SKIP_BUILD=1 (use existing binaries), DEMO_BIN (their directory,
#      default build/bin; tests/e2e/test_demo_script.py points it at the build under test).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VAR=${DEMO_DIR:-$ROOT/var}
SIZE=${DEMO_SIZE:-1G}
NBD_PORT=${DEMO_NBD_PORT:-10809}
REPL_PORT=${DEMO_REPL_PORT:-10810}
VOLUME=${DEMO_VOLUME:-demo}
BIN=${DEMO_BIN:-$ROOT/build/bin}
PY=/usr/bin/python3                    # Debian's, has the nbd module
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH   # nbdsh needs Debian's python3 first

PRIMARY_ADMIN=$VAR/primary.sock
SECONDARY_ADMIN=$VAR/secondary.sock
URI=nbd://127.0.0.1:$NBD_PORT/$VOLUME

die() { echo "demo: $*" >&2; exit 1; }

# PID from var/NAME.pid if that process is alive and is our binary.
running_pid() {
  local f=$VAR/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  grep -qa "repl-$1" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Waits up to 5 s for running_pid NAME: right after `nohup ... &`, $! is the forked shell until it
# has exec'd nohup and nohup the agent, so its cmdline is still this script's.
wait_exec() {
  local i
  for ((i = 0; i < 50; i++)); do
    running_pid "$1" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}

stop_one() {
  local name=$1 pid i
  if pid=$(running_pid "$name"); then
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo: repl-$name (pid $pid) ignored SIGTERM for 10 s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped repl-$name (pid $pid)"
  else
    echo "repl-$name is not running"
  fi
  rm -f "$VAR/$name.pid"
}

# sync_state of the primary, or "unreachable"
primary_state() {
  "$BIN/replctl" --admin-socket="$PRIMARY_ADMIN" status --json 2>/dev/null |
    "$PY" -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
out = v["connection"] + " " + v["sync_state"]
if v["sync_state"] == "resyncing":
    out += " (%d/%d MiB)" % (v["resync_done_bytes"] >> 20, v["resync_total_bytes"] >> 20)
if v.get("last_error"):
    out += ", last error: " + v["last_error"]
print(out)' 2>/dev/null || echo "unreachable"
}

print_usage_info() {
  cat <<EOF

blockrepl demo is running (logs: $VAR/primary.log, $VAR/secondary.log)
  write to the primary:  $URI
      e.g. nbdsh -u $URI -c 'h.pwrite(b"hello" * 100, 0)'
           qemu-io -f raw -c 'write -P 0xab 0 1M' $URI
  status:                $BIN/replctl --admin-socket=$PRIMARY_ADMIN status
                         $BIN/replctl --admin-socket=$SECONDARY_ADMIN status
  compare the stores:    cmp $VAR/primary.img $VAR/secondary.img   (once status says in_sync)
  stop:                  scripts/demo.sh stop
EOF
}

case "${1:-start}" in
  stop)
    stop_one primary
    stop_one secondary
    exit 0
    ;;
  status)
    for n in primary secondary; do
      if pid=$(running_pid $n); then
        echo "== repl-$n (pid $pid)"
        "$BIN/replctl" --admin-socket="$VAR/$n.sock" status || true
      else
        echo "== repl-$n: not running"
      fi
    done
    exit 0
    ;;
  start) ;;
  *) echo "usage: scripts/demo.sh [start|status|stop]" >&2; exit 2 ;;
esac

# --- start ---------------------------------------------------------------------------------
if p=$(running_pid primary) && s=$(running_pid secondary); then
  echo "demo: the pair is already running (primary pid $p, secondary pid $s): $(primary_state)"
  print_usage_info
  exit 0
fi
if running_pid primary >/dev/null || running_pid secondary >/dev/null; then
  die "only one of the pair is running; run 'scripts/demo.sh stop' first"
fi

scripts/install-deps.sh
if [[ -z ${DEMO_SKIP_BUILD:-} ]]; then
  scripts/build.sh
fi
for b in repl-primary repl-secondary replctl; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing after the build"
done

mkdir -p "$VAR"
for port in "$NBD_PORT" "$REPL_PORT"; do
  if "$PY" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then :; else
    die "port 127.0.0.1:$port is in use (set DEMO_NBD_PORT / DEMO_REPL_PORT)"
  fi
done
# Admin sockets left behind by a crash would stop the agents from starting.
rm -f "$PRIMARY_ADMIN" "$SECONDARY_ADMIN"
new_pair=
[[ -e $VAR/primary.img ]] || new_pair=1
for n in primary secondary; do
  [[ -e $VAR/$n.img ]] || truncate -s "$SIZE" "$VAR/$n.img"   # sparse
done

nohup "$BIN/repl-secondary" --volume="$VOLUME" --store="$VAR/secondary.img" \
  --listen="127.0.0.1:$REPL_PORT" --admin-socket="$SECONDARY_ADMIN" --size="$SIZE" \
  >>"$VAR/secondary.log" 2>&1 </dev/null &
echo $! >"$VAR/secondary.pid"
primary_args=(--volume="$VOLUME" --store="$VAR/primary.img" --secondary="127.0.0.1:$REPL_PORT"
  --nbd-listen="127.0.0.1:$NBD_PORT" --admin-socket="$PRIMARY_ADMIN" --size="$SIZE")
# Two brand-new sparse files are equal: no need to copy 1 GiB of zeroes.
[[ -n $new_pair ]] && primary_args+=(--assume-clean)
nohup "$BIN/repl-primary" "${primary_args[@]}" >>"$VAR/primary.log" 2>&1 </dev/null &
echo $! >"$VAR/primary.pid"
echo "started repl-secondary (pid $(<"$VAR/secondary.pid")) and repl-primary (pid $(<"$VAR/primary.pid"))"

fail() {
  echo "demo: $*" >&2
  echo "--- tail $VAR/secondary.log" >&2; tail -n 20 "$VAR/secondary.log" >&2 || true
  echo "--- tail $VAR/primary.log" >&2; tail -n 20 "$VAR/primary.log" >&2 || true
  echo "(the agents are left running for inspection; scripts/demo.sh stop)" >&2
  exit 1
}

# Wait for in_sync (a deadline, polling).
wait_in_sync() {
  local deadline=$((SECONDS + ${1:-120})) state
  while :; do
    running_pid primary >/dev/null || fail "repl-primary exited"
    running_pid secondary >/dev/null || fail "repl-secondary exited"
    state=$(primary_state)
    [[ $state == "connected in_sync"* ]] && return 0
    ((SECONDS < deadline)) || fail "not in_sync after ${1:-120} s: $state"
    sleep 0.2
  done
}
wait_exec secondary || fail "repl-secondary did not start"
wait_exec primary || fail "repl-primary did not start"
wait_in_sync 120
echo "pair is in_sync"

# Self-check through NBD: write, read back, flush; then the replica must match.
nbdsh -u "$URI" -c '
size = h.get_size()
data = (b"blockrepl demo self-check " * 40330)[:min(1048576, size)]
offset = (size - len(data)) // 2 // 4096 * 4096   # the middle of the volume, whatever DEMO_SIZE
h.pwrite(data, offset, flags=nbd.CMD_FLAG_FUA)
assert h.pread(len(data), offset) == data
h.flush()
' || fail "nbdsh self-check against $URI failed"
wait_in_sync 60
cmp "$VAR/primary.img" "$VAR/secondary.img" || fail "the stores differ after in_sync"
echo "self-check: wrote up to 1 MiB through NBD; both stores are identical"
print_usage_info
