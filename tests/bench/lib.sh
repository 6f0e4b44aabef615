# Shared by the shell benchmarks in tests/bench/ (source it after setting BIN and SIZE):
# tool checks, a temp dir whose processes are stopped by PID on exit, port helpers, replctl
# status helpers, and starting an nbdkit reference or a replicated pair on loopback.
#
#   bench_require TOOL...          exit 77 when a tool is missing (scripts/install-deps.sh)
#   bench_setup                    DIR (temp dir), PIDS, the EXIT trap (BENCH_KEEP=1 keeps DIR)
#   free_port / wait_port PORT     a free 127.0.0.1 port / wait until something listens on it
#   vol_fields SOCK FIELD...       fields of the only volume of `replctl status --json`
#   wait_in_sync SOCK TIMEOUT_S    until connected, in_sync, nothing dirty or in flight
#   make_file PATH...              SIZE bytes: sparse, fallocated (BENCH_PREALLOC=1) or written (=fill)
#   start_nbdkit                   nbdkit's file plugin on its own file: URI[nbdkit]
#   start_pair NAME [FLAGS...]     repl-secondary + repl-primary --assume-clean FLAGS, in sync:
#                                  URI[NAME], ADMIN[NAME], PSTORE[NAME], SSTORE[NAME]
PY=/usr/bin/python3
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

bench_require() {
  local t b
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "bench: missing tool $t (scripts/install-deps.sh)" >&2; exit 77; }
  done
  for b in repl-primary repl-secondary replctl; do
    [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b missing (scripts/build.sh)" >&2; exit 1; }
  done
}

bench_cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n ${BENCH_KEEP:-} ]]; then echo "bench: kept $DIR"; else rm -rf "$DIR"; fi
}

bench_setup() {
  DIR=$(mktemp -d /tmp/blockrepl-bench.XXXXXX)
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # wait until something listens on 127.0.0.1:$1 (10 s; reads /proc, no connect)
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "^ *[0-9]*: [0-9A-F]*:$(printf '%04X' "$1") [0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 \
      2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on port $1" >&2; return 1
}
vol_fields() {  # vol_fields ADMIN_SOCKET FIELD... -> the values, space-separated (absent = 0)
  local sock=$1; shift
  "$BIN/replctl" --admin-socket="$sock" status --json |
    "$PY" -c 'import json,sys; v=json.load(sys.stdin)["volumes"][0]; print(*(v.get(f, 0) for f in sys.argv[1:]))' "$@"
}
wait_in_sync() {  # wait_in_sync ADMIN_SOCKET TIMEOUT_S
  local deadline=$((SECONDS + $2)) s
  while :; do
    s=$("$BIN/replctl" --admin-socket="$1" status --json 2>/dev/null |
        "$PY" -c 'import json,sys; v=json.load(sys.stdin)["volumes"][0]; print(v["connection"], v["sync_state"], v["dirty_chunks"], v["inflight_writes"])' 2>/dev/null || echo unreachable)
    [[ $s == "connected in_sync 0 0" ]] && return 0
    ((SECONDS < deadline)) || { echo "bench: $1 not in_sync after $2 s: $s" >&2; return 1; }
    sleep 0.2
  done
}

declare -A URI ADMIN PSTORE SSTORE
make_file() {  # make_file PATH...: sparse, allocated (BENCH_PREALLOC=1) or written (=fill)
  local f bs=${BENCH_FILL_BS:-1M}
  for f in "$@"; do
    if [[ ${BENCH_PREALLOC:-0} == fill ]]; then
      # The same bytes in each file (a source and its replica start equal), written in pieces of
      # BENCH_FILL_BS (1M by default, as compare.py --files written does). The piece decides the
      # size of the page cache's folios (Linux 6.18, ext4), and a later 4 KiB write into a
      # cached 1 MiB folio walks all 256 of its buffer heads: at 4K QD 32 that walk is most of
      # every target's time (docs/PERFORMANCE.md, round 17). 4k leaves 4 KiB folios, as after
      # a client's own small writes.
      if [[ $f == "$1" ]]; then
        dd if=/dev/urandom of="$f" bs="$bs" count="$(($(numfmt --from=iec "$SIZE") / $(numfmt --from=iec "${bs^^}")))" \
          iflag=fullblock status=none
      else
        dd if="$1" of="$f" bs="$bs" status=none
      fi
      continue
    fi
    truncate -s "$SIZE" "$f"
    [[ ${BENCH_PREALLOC:-0} == 0 ]] || fallocate -l "$SIZE" "$f"
  done
  if [[ ${BENCH_CACHE:-warm} == cold ]]; then
    # The data on disk and none of it in the page cache, as for a disk larger than RAM (after
    # every file is made: copying the first reads it back into the cache). Later writes then
    # make folios of their own size, but each first touch of a page pays for fresh memory (on
    # this guest, for the host's page too: free page reporting gives freed memory back).
    sync "$@"
    for f in "$@"; do
      $PY -c 'import os, sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)' "$f"
    done
  fi
}
start_nbdkit() {
  local port; port=$(free_port)
  make_file "$DIR/nbdkit.img"
  nbdkit -f -i 127.0.0.1 -p "$port" file "$DIR/nbdkit.img" >"$DIR/nbdkit.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$port"
  URI[nbdkit]=nbd://127.0.0.1:$port/
}
start_pair() {  # start_pair NAME [primary flags...]
  local name=$1; shift
  local sport nport; sport=$(free_port); nport=$(free_port)
  make_file "$DIR/$name-primary.img" "$DIR/$name-secondary.img"
  "$BIN/repl-secondary" --volume="$name" --store="$DIR/$name-secondary.img" \
    --listen="127.0.0.1:$sport" --admin-socket="$DIR/$name-secondary.sock" \
    >"$DIR/$name-secondary.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$sport"
  "$BIN/repl-primary" --volume="$name" --store="$DIR/$name-primary.img" \
    --secondary="127.0.0.1:$sport" --nbd-listen="127.0.0.1:$nport" \
    --admin-socket="$DIR/$name-primary.sock" --assume-clean "$@" \
    >"$DIR/$name-primary.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_port "$nport"
  ADMIN[$name]=$DIR/$name-primary.sock
  PSTORE[$name]=$DIR/$name-primary.img
  SSTORE[$name]=$DIR/$name-secondary.img
  wait_in_sync "${ADMIN[$name]}" 30
  URI[$name]=nbd://127.0.0.1:$nport/$name
}
