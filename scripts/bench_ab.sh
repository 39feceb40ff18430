#!/bin/bash
# A/B of two source trees on one storage, interleaved: for each round, a
# fresh server of tree A then of tree B, each measured the same way, so
# the load other processes put on this shared machine falls on both.
#   scripts/bench_ab.sh <src of A> <src of B> <storage: sqlite|redis|postgres> <rounds> <workers> -- <bench args>
# WORKERS_B=N gives side B another number of server processes (one tree,
# one process against two: pass the same tree twice). STORAGE_B=<storage>
# gives side B another storage (one tree on two drivers). URL_OPTIONS_B=a=b&c=d
# adds query options to side B's storage URL (a driver or server setting).
# It also prints the server's CPU (user + system, every worker's) per
# request it served, less moved by the machine's load than a rate, and the
# backend's (redis-server, or the PostgreSQL cluster's processes): what
# one request costs each, whatever the number of cores.
# Only loopback; each run is bounded by the bench's --time. JSON per run in $OUT.
# postgres: a private durable cluster (initdb defaults: fsync on) on a free
# port, as the postgres user when run as root; a fresh database per run.
set -u
cd "$(dirname "$0")/.." && . .venv/bin/activate
a=$1; b=$2; storage=$3; rounds=$4; serve_workers=$5; shift 6
out=${OUT:-/tmp/tidings-ab}; mkdir -p "$out"
storage_b=${STORAGE_B:-$storage}
uses() { [ "$storage" = "$1" ] || [ "$storage_b" = "$1" ]; }
redis_pid=
if uses redis; then
  rport=$(python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  redis-server --port "$rport" --bind 127.0.0.1 --appendonly yes --dir "$out" --save '' \
    --daemonize no > "$out/redis.log" 2>&1 &
  redis_pid=$!
  sleep 0.5
fi
pg_dir=
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if uses postgres; then
  pport=$(python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  pg_dir=$(mktemp -d /tmp/tidings-ab-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
  pg initdb -D "$pg_dir/data" -A trust -U postgres --encoding=UTF8 --locale=C > "$out/pg-init.log" 2>&1
  pg pg_ctl -D "$pg_dir/data" -l "$pg_dir/log" -w start -o "-p $pport -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=$pg_dir -c max_connections=200 -c shared_buffers=256MB" > /dev/null
fi
# User + system clock ticks of a server process and its workers so far.
cpu_ticks() {
  local total=0 p
  [ -z "$1" ] && { echo 0; return; }
  for p in "$1" $(pgrep -P "$1"); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
# The process whose CPU (with its children's) is the backend's; none for SQLite.
backend_pid() {
  case $1 in
    redis) echo "$redis_pid" ;;
    postgres) head -1 "$pg_dir/data/postmaster.pid" ;;
  esac
}
for r in $(seq "$rounds"); do
  for side in A B; do
    src=$a; w=$serve_workers; st=$storage
    [ $side = B ] && src=$b && w=${WORKERS_B:-$serve_workers} && st=$storage_b
    port=$(python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    if [ "$st" = redis ]; then
      url="redis://127.0.0.1:$rport/0?prefix=ab$r$side:"
    elif [ "$st" = postgres ]; then
      pg psql -q -h 127.0.0.1 -p "$pport" -U postgres -c "CREATE DATABASE ab_${r}_${side,,}" > /dev/null
      url="postgres://postgres@127.0.0.1:$pport/ab_${r}_${side,,}"
      [ $side = B ] && [ -n "${URL_OPTIONS_B:-}" ] && url="$url?$URL_OPTIONS_B"
    else
      rm -rf "$out/ab.db"*; url="sqlite:///$out/ab.db"
    fi
    PYTHONPATH=$src python -m tidings serve --host 127.0.0.1 --port "$port" --workers "$w" \
      --storage "$url" > "$out/serve.$r.$side.log" 2>&1 &
    spid=$!
    for t in $(seq 100); do curl -s -o /dev/null -H 'Client-ID: 3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f' \
      -H 'X-Project-ID: p' "http://127.0.0.1:$port/v2/ping" && break; sleep 0.1; done
    ticks=$(cpu_ticks $spid); backend=$(backend_pid $st); bticks=$(cpu_ticks "$backend")
    python -m tidings.bench --url "http://127.0.0.1:$port" --json --quiet "$@" > "$out/$r.$side.json" 2>/dev/null
    ticks=$(( $(cpu_ticks $spid) - ticks )); bticks=$(( $(cpu_ticks "$backend") - bticks ))
    # With --workers N, /metrics merges the workers' snapshots, written
    # every second: wait for the last ones.
    [ "$w" -gt 1 ] && sleep 1.2
    # The server's own latency histograms: the bench's p99 mixes a
    # consumer's claims with its deletes; /metrics has them per route.
    curl -s "http://127.0.0.1:$port/metrics" > "$out/$r.$side.metrics"
    python - "$out/$r.$side.json" "$r" "$side" "$ticks" "$(getconf CLK_TCK)" "$w" \
      "$out/$r.$side.metrics" "$bticks" <<'PY'
import json, re, sys
roles = json.load(open(sys.argv[1]))["roles"]
for name, f in roles.items():
    print(f"round {sys.argv[2]} {sys.argv[3]} {name}: {f['requests_per_s']} req/s "
          f"{f['messages_per_s']} msg/s p99 {f['latency_ms']['p99']} ms errors {f['errors']}")
# The server's and the backend's CPU over the bench (warm-up included) per
# request the server counted (all its workers').
served = sum(float(n) for n in re.findall(
    r"^tidings_http_request_duration_seconds_count\{.*\} (\S+)$",
    open(sys.argv[7]).read(), re.M))
if served:
    tick_us = 1e6 / int(sys.argv[5]) / served
    backend = f", backend {int(sys.argv[8]) * tick_us:.1f} us" if int(sys.argv[8]) else ""
    print(f"round {sys.argv[2]} {sys.argv[3]} server CPU: {int(sys.argv[4]) * tick_us:.1f} us "
          f"a request ({sys.argv[6]} process(es)){backend}")
PY
    python scripts/bench_ab_routes.py "$out/$r.$side.metrics" "$r" "$side"
    kill $spid; wait $spid 2>/dev/null
  done
done
[ -n "$redis_pid" ] && kill $redis_pid
if [ -n "$pg_dir" ]; then pg pg_ctl -D "$pg_dir/data" -m fast -w stop > /dev/null; rm -rf "$pg_dir"; fi
