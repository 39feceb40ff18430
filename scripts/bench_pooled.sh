#!/bin/bash
# Pooled routing overhead: the same bench against a direct SQLite server and
# a pooled server (SQLite control store, one SQLite pool), 3 runs of each,
# interleaved; prints the medians. Results as JSON in $OUT.
cd "$(dirname "$0")/.." && . .venv/bin/activate
out=${OUT:-/tmp/tidings-pooled}; rm -rf "$out"; mkdir -p "$out"
wait_up() { for t in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/v2/ping" && return; sleep 0.1; done; }
for r in 1 2 3; do
  for mode in direct pooled; do
    port=$((18950 + r * 2)); [ $mode = pooled ] && port=$((port + 1))
    d=$out/$mode$r; mkdir -p "$d"
    if [ $mode = direct ]; then
      tidings serve --port $port --storage "sqlite:///$d/t.db" > "$d/serve.log" 2>&1 & spid=$!
    else
      TIDINGS_POOLING__CONTROL_STORAGE="sqlite:///$d/control.db" \
        tidings pool add p1 "sqlite:///$d/p1.db" --weight 100 > /dev/null
      TIDINGS_POOLING__ENABLED=true TIDINGS_POOLING__CONTROL_STORAGE="sqlite:///$d/control.db" \
        tidings serve --port $port > "$d/serve.log" 2>&1 & spid=$!
    fi
    wait_up $port
    for op in "post1 producer --messages-per-post 1" "claim consumer --messages-per-claim 10"; do
      set -- $op
      python -m tidings.bench --url "http://127.0.0.1:$port" --time 3 --warmup 1 --workers 32 \
        --roles "ping,$2" "$3" "$4" --json > "$d/$1.json" 2>/dev/null
    done
    kill $spid; wait $spid 2>/dev/null
  done
done
OUT="$out" python3 - <<'PY'
import glob, json, os, statistics
out = os.environ["OUT"]
for op, role in (("post1", "producer"), ("claim", "consumer")):
    for mode in ("direct", "pooled"):
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{mode}*/{op}.json"))]
        rate = statistics.median(r["roles"][role]["requests_per_s"] for r in runs)
        ping = statistics.median(r["roles"]["ping"]["requests_per_s"] for r in runs)
        print(f"{op:6s} {mode:7s} {rate:8.0f} req/s   ping {ping:8.0f} req/s")
PY
