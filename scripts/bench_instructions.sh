#!/bin/bash
# Instructions per request of one source tree, counted by valgrind: the
# difference between two runs of scripts/bench_instructions.py (N1 and N2
# requests) over N2 - N1, so start-up cancels out. One client by default:
# each request is then its own commit, and the count repeats within about
# 1 % (with 32 clients the group sizes vary with scheduling: about 7 %).
#   scripts/bench_instructions.sh <src> [post|claim|ping] [N1] [N2] [url]
# CLIENTS=N for concurrent clients. sync=off by default: an fsync is time,
# not instructions. Takes about a minute a run.
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONHASHSEED=0
src=$1; kind=${2:-post}; n1=${3:-300}; n2=${4:-1300}; url=${5:-"sqlite:///{d}/h.db?sync=off"}
count() {
  PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    .venv/bin/python scripts/bench_instructions.py "$kind" "$1" "${CLIENTS:-1}" "$url" 2>&1 |
    awk '/Collected/ {print $4}'
}
first=$(count "$n1"); second=$(count "$n2")
echo "$src $kind: $(( (second - first) / (n2 - n1) )) instructions a request"
