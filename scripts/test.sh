#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
#   ./scripts/test.sh [pytest arguments]
# Debian packages are installed when missing (root, or sudo); Python packages
# go into ./.venv. Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Binaries the tests start for real, and the Debian package that has each.
declare -A DEBIAN_PACKAGE_OF=(
  [curl]=curl
)

missing=()
for binary in "${!DEBIAN_PACKAGE_OF[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${DEBIAN_PACKAGE_OF[$binary]}")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
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
