#!/usr/bin/env python3
"""OpenStack's own suites for Zaqar against Tidings on a chosen storage driver.

    .venv/bin/python scripts/openstack_suites.py --driver redis
    .venv/bin/python scripts/openstack_suites.py --driver postgres --suite tempest
    .venv/bin/python scripts/openstack_suites.py --driver sqlite --json /tmp/results.json

The test suite (tests/compat/) runs both on SQLite; this runs the same two
against SQLite, Redis or PostgreSQL:

- tempest + zaqar-tempest-plugin against a Tidings with Keystone auth: a real
  Keystone (tests/support/keystone.py) with the server as the catalog's
  ``messaging`` endpoint;
- python-zaqarclient's functional tests against a Tidings with the default
  settings (noauth), on the same backend.

Redis and PostgreSQL are private servers on free loopback ports, started
here as the test fixtures start them, and stopped at the end. The suites'
venv is the cached one under .cache/ (built on first use). Prints each
suite's counts and every failing test; exits 1 when tempest does not pass
every test or the client's suite fails a test Zaqar passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import openstack_suites as suites  # noqa: E402 - needs the path above
from tests.support.postgres_server import new_server  # noqa: E402
from tests.support.redis_server import RedisServer, unique_prefix  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

DRIVERS = ("sqlite", "redis", "postgres")


def storage_urls(driver: str, base: Path, stack: ExitStack) -> dict[str, str]:
    """One storage URL per suite, on one backend of ``driver``: the suites
    use fixed queue names, so each gets its own database or key prefix."""
    names = ("tempest", "zaqarclient")
    if driver == "sqlite":
        return {name: f"sqlite:///{base}/{name}.db" for name in names}
    if driver == "redis":
        redis = RedisServer()
        stack.callback(redis.cleanup)
        redis.start()
        return {name: f"{redis.url}?prefix={unique_prefix()}" for name in names}
    postgres = new_server()
    stack.callback(postgres.destroy)
    for name in names:
        postgres.psql(f"CREATE DATABASE {name}")
    return {name: postgres.url(name) for name in names}


def start(storage: str, env: dict[str, str], log: Path, stack: ExitStack) -> ServerProcess:
    server = ServerProcess(storage=storage, env=env, log_path=log)
    stack.callback(server.stop)
    return server.start()


def run(driver: str, which: str, base: Path
        ) -> list[tuple[suites.SuiteResult, tuple[bool, str]]]:
    """Each suite's result with its verdict: goal reached, and the report."""
    venv = suites.suites_venv()
    results = []
    with ExitStack() as stack:
        urls = storage_urls(driver, base, stack)
        if which in ("tempest", "all"):
            result = suites.tempest_on(urls["tempest"], base, venv)
            results.append((result, suites.tempest_verdict(result)))
        if which in ("zaqarclient", "all"):
            server = start(urls["zaqarclient"], {}, base / "zaqarclient-server.log", stack)
            result = suites.run_zaqarclient_functional(base, server.url, venv)
            results.append((result, suites.client_verdict(result)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", choices=DRIVERS, default="sqlite")
    parser.add_argument("--suite", choices=("tempest", "zaqarclient", "all"), default="all")
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    parser.add_argument("--keep", type=Path,
                        help="work in this directory and keep it (logs, subunit streams)")
    args = parser.parse_args()
    with ExitStack() as stack:
        base = args.keep or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="tidings-suites-")))
        base.mkdir(parents=True, exist_ok=True)
        results = run(args.driver, args.suite, base.resolve())
    for _, (_, report) in results:
        print(f"[{args.driver}] {report}\n")
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r, _ in results], indent=1))
    return 0 if all(ok for _, (ok, _) in results) else 1


if __name__ == "__main__":
    sys.exit(main())
