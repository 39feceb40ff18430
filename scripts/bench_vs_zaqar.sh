#!/bin/bash
# Zaqar and Tidings side by side under the same `tidings bench` load (the
# first table of BENCHMARKS.md). Installs Zaqar and uWSGI from PyPI into a
# venv cached under .cache/ (keyed on the pinned versions, reused while it
# imports), then runs scripts/bench_vs_zaqar.py, which starts every server
# on a free loopback port with private backends and measures them in turn.
#
#   scripts/bench_vs_zaqar.sh --rounds 2 --time 5 --sqs
#   scripts/bench_vs_zaqar.sh --configs sqlite1,redis1 --backend-cpus 0 --server-cpus 1
#
# Every option is passed on: see `scripts/bench_vs_zaqar.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

ZAQAR_VERSION=23.0.1
UWSGI_VERSION=2.0.31
# Zaqar's Redis driver imports redis-py, which Zaqar does not require.
REDIS_PY_VERSION=7.1.0
python=${PYTHON:-python3}
pyver=$($python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=.cache/zaqar-$ZAQAR_VERSION-uwsgi-$UWSGI_VERSION-redis-$REDIS_PY_VERSION-py$pyver

if ! { [ -x $venv/bin/uwsgi ] && $venv/bin/python -c 'import zaqar, redis' 2>/dev/null; }; then
  # uWSGI is compiled on install: it needs a C compiler and Python's headers.
  missing=""
  command -v gcc > /dev/null || missing="$missing gcc"
  [ -f "$($python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
    || missing="$missing python3-dev"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y $missing
    else echo "install$missing (apt-get install$missing) to build uWSGI" >&2; exit 1; fi
  fi
  for tool in redis-server redis-cli; do
    command -v $tool > /dev/null || { echo "$tool is needed (apt-get install redis-server)" >&2; exit 1; }
  done
  rm -rf $venv
  $python -m venv $venv
  $venv/bin/pip install -q --upgrade pip
  $venv/bin/pip install -q "zaqar==$ZAQAR_VERSION" "uwsgi==$UWSGI_VERSION" "redis==$REDIS_PY_VERSION"
fi

exec .venv/bin/python scripts/bench_vs_zaqar.py --zaqar-venv "$PWD/$venv" \
  --zaqar-version "$ZAQAR_VERSION" "$@"
