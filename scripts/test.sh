#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
#   ./scripts/test.sh [pytest arguments]
# Debian packages are installed when missing (root, or sudo); Python packages
# go into ./.venv. Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests start for real, and the Debian package that provides it.
# Debian keeps PostgreSQL's initdb and pg_ctl off PATH, under
# /usr/lib/postgresql/<version>/bin, where the test fixtures look too.
have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
have_postgres || missing+=(postgresql)
# The web console's tests drive a headless Chromium (tests/console/).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# The quickstart's snippets (tests/docs) run curl.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# deploy/ is checked with systemd-analyze and a real nginx (Debian keeps
# nginx in /usr/sbin, which a user's PATH may lack).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$status"
