"""OpenStack's own suites for Zaqar, each run once a session against a real
Tidings server (tests/support/openstack_suites.py runs them).

The suites live in a venv cached under ``<repo>/.cache/``. Under CI=true it
must build and the suites must run; elsewhere a machine that cannot
install them (no network) skips these tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support import openstack_suites as suites
from tests.support.keystone import KeystoneUnavailable
from tests.support.server import ServerProcess


def unavailable(what: str, exc: Exception) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} must run under CI: {exc}", pytrace=False)
    pytest.skip(f"{what} could not run here: {exc}")


@pytest.fixture(scope="session")
def suites_venv() -> Path:
    try:
        return suites.suites_venv()
    except suites.SuiteUnavailable as exc:
        unavailable("the OpenStack suites' venv", exc)


def started(base: Path, env: dict[str, str]) -> ServerProcess:
    return ServerProcess(storage=f"sqlite:///{base}/tidings.db", env=env,
                         log_path=base / "server.log").start()


@pytest.fixture(scope="session")
def tempest_results(tmp_path_factory: pytest.TempPathFactory, suites_venv: Path,
                    ) -> suites.SuiteResult:
    """tempest's Zaqar plugin against Tidings with Keystone auth (~150 s):
    the run tests/conftest.py started with the session."""
    try:
        return suites.start_tempest(tmp_path_factory).result()
    except KeystoneUnavailable as exc:
        unavailable("tempest's Keystone", exc)


@pytest.fixture(scope="session")
def zaqarclient_results(tmp_path_factory: pytest.TempPathFactory, suites_venv: Path
                        ) -> suites.SuiteResult:
    """python-zaqarclient's functional tests against the default server."""
    base = tmp_path_factory.mktemp("zaqarclient")
    server = started(base, {})
    try:
        return suites.run_zaqarclient_functional(base, server.url, suites_venv)
    except suites.SuiteUnavailable as exc:  # its sdist could not be downloaded
        unavailable("python-zaqarclient's functional tests", exc)
    finally:
        server.stop()
