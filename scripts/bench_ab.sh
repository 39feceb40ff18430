#!/bin/bash
# A/B of two source trees on one storage, interleaved: for each round, a
# fresh server of tree A then of tree B, each measured the same way, so
# the load other processes put on this shared machine falls on both.
#   scripts/bench_ab.sh <src of A> <src of B> <storage: sqlite|redis> <rounds> <workers> -- <bench args>
# WORKERS_B=N gives side B another number of server processes (one tree,
# one process against two: pass the same tree twice). STORAGE_B=sqlite|redis
# gives side B another storage (one tree on SQLite against it on Redis).
# Only loopback; each run is bounded by the bench's --time. JSON per run in $OUT.
set -u
cd "$(dirname "$0")/.." && . .venv/bin/activate
a=$1; b=$2; storage=$3; rounds=$4; serve_workers=$5; shift 6
out=${OUT:-/tmp/tidings-ab}; mkdir -p "$out"
redis_pid=
if [ "$storage" = redis ] || [ "${STORAGE_B:-}" = redis ]; then
  rport=$(python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  redis-server --port "$rport" --bind 127.0.0.1 --appendonly yes --dir "$out" --save '' \
    --daemonize no > "$out/redis.log" 2>&1 &
  redis_pid=$!
  sleep 0.5
fi
for r in $(seq "$rounds"); do
  for side in A B; do
    src=$a; w=$serve_workers
    st=$storage
    [ $side = B ] && src=$b && w=${WORKERS_B:-$serve_workers} && st=${STORAGE_B:-$storage}
    port=$(python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    if [ "$st" = redis ]; then
      url="redis://127.0.0.1:$rport/0?prefix=ab$r$side:"
    else
      rm -rf "$out/ab.db"*; url="sqlite:///$out/ab.db"
    fi
    PYTHONPATH=$src python -m tidings serve --host 127.0.0.1 --port "$port" --workers "$w" \
      --storage "$url" > "$out/serve.$r.$side.log" 2>&1 &
    spid=$!
    for t in $(seq 100); do curl -s -o /dev/null -H 'Client-ID: 3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f' \
      -H 'X-Project-ID: p' "http://127.0.0.1:$port/v2/ping" && break; sleep 0.1; done
    python -m tidings.bench --url "http://127.0.0.1:$port" --json --quiet "$@" > "$out/$r.$side.json" 2>/dev/null
    # The server's own latency histograms: the bench's p99 mixes a
    # consumer's claims with its deletes; /metrics has them per route.
    curl -s "http://127.0.0.1:$port/metrics" > "$out/$r.$side.metrics"
    python - "$out/$r.$side.json" "$r" "$side" <<'PY'
import json, sys
roles = json.load(open(sys.argv[1]))["roles"]
for name, f in roles.items():
    print(f"round {sys.argv[2]} {sys.argv[3]} {name}: {f['requests_per_s']} req/s "
          f"{f['messages_per_s']} msg/s p99 {f['latency_ms']['p99']} ms errors {f['errors']}")
PY
    python scripts/bench_ab_routes.py "$out/$r.$side.metrics" "$r" "$side"
    kill $spid; wait $spid 2>/dev/null
  done
done
[ -n "$redis_pid" ] && kill $redis_pid
