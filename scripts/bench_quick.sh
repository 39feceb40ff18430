#!/bin/bash
# The headline SQLite figures: each run 3 times against a fresh one-process
# server, the ping ceiling measured in the same run. Results as JSON in $OUT.
# runs: role args ; 3 runs each against a fresh server per run
cd "$(dirname "$0")/.." && . .venv/bin/activate
out=${OUT:-/tmp/tidings-quick}; mkdir -p $out; rm -f $out/*.json
i=0
run() { # name workers extra...
  name=$1; w=$2; shift 2
  for r in 1 2 3; do
    i=$((i+1)); db=$out/db$i.db; rm -rf $db*
    port=$((18900+i))
    tidings serve --port $port --storage sqlite:///$db > $out/serve$i.log 2>&1 &
    spid=$!
    for t in $(seq 50); do curl -s -o /dev/null -H 'Client-ID: 3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f' -H 'X-Project-ID: p' http://127.0.0.1:$port/v2/ping && break; sleep 0.1; done
    python -m tidings.bench --url http://127.0.0.1:$port --time 3 --warmup 1 --workers $w --json "$@" > $out/$name.$r.json 2>/dev/null
    kill $spid; wait $spid 2>/dev/null
  done
}
# Connections: the best of 8/16/32/64 for each operation in the last
# scripts/bench_matrix.py run, and about half that load for the p99 lines.
run post1 64 --roles ping,producer --messages-per-post 1
run post1_32 32 --roles ping,producer --messages-per-post 1
run post10 64 --roles ping,producer --messages-per-post 10
run claim 32 --roles ping,consumer --messages-per-claim 10
run claimbulk 32 --roles ping,consumer --messages-per-claim 10 --bulk-delete
run observer 8 --roles ping,observer --observer-limit 10
run post1_half 6 --roles ping,producer --messages-per-post 1
run claim_half 4 --roles ping,consumer --messages-per-claim 10
python scripts/bench_summary.py $out
