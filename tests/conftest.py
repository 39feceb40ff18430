"""Fixtures shared by every test tier.

One real server process serves the whole session; tests stay apart by
using a fresh project (X-Project-ID) each.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.keystone import KeystoneServer, prebuild_keystone_venv, start_keystone
from tests.support.notify_server import nhttp, notify_log_clean, notify_server  # noqa: F401
from tests.support.openstack_suites import prebuild_suites_venv, start_tempest, stop_tempest
from tests.support.server import ServerProcess


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the cached venvs the collected tests will need
    (tests/support/venvs.py): on a clean checkout their pip installs then
    overlap with each other and with the tests that come first, instead of
    each holding up the first test that needs it. Nothing starts for a
    run that needs none of them."""
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if "keystone" in needed or "tempest_results" in needed:  # tempest has its own
        prebuild_keystone_venv()
    if "suites_venv" in needed:
        prebuild_suites_venv()


def uses_tempest(item: pytest.Item) -> bool:
    return "tempest_results" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tempest's tests last (a stable sort keeps the rest in order): their
    run, started with the session (``tempest_beside_the_tests``), has then
    had the other tests' time to finish instead of being waited for."""
    items.sort(key=uses_tempest)


@pytest.fixture(scope="session", autouse=True)
def tempest_beside_the_tests(request: pytest.FixtureRequest,
                             tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start tempest's run (tests/support/openstack_suites.py) at the first
    test of a session that has tempest's tests; stop what is left of it at
    the end of a session cut short."""
    if any(uses_tempest(item) for item in request.session.items):
        start_tempest(tmp_path_factory)
    yield
    stop_tempest()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("server")
    proc = ServerProcess(storage=f"sqlite:///{base}/tidings.db", log_path=base / "server.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def server_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture
def project() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def headers(project: str, client_id: str) -> dict[str, str]:
    return {"X-Project-ID": project, "Client-ID": client_id}


@pytest.fixture
def http(server_url: str, headers: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client for the session's server, in this test's project."""
    with httpx.Client(base_url=server_url, headers=headers, timeout=10) as client:
        yield client


# One real Keystone for the whole session (tests/support/keystone.py), shared
# by the auth, console, SQS, OpenStack CLI and OpenStack suite tests. Under
# CI=true it must start; elsewhere a machine that cannot install it (no
# network) skips the tests that need it.
@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    try:
        server = start_keystone(tmp_path_factory.mktemp("keystone"))
    except Exception as exc:  # noqa: BLE001 - any failure to install or start
        if os.environ.get("CI") == "true":
            pytest.fail(f"Keystone must start under CI: {exc}", pytrace=False)
        pytest.skip(f"Keystone could not be started here: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tokens(keystone: KeystoneServer) -> dict[str, str]:
    """A token for each test user (valid for the hour the session lasts)."""
    return {user: keystone.token(user) for user in ("a-member", "a-admin", "b-member")}


@pytest.fixture(scope="session")
def projects(keystone: KeystoneServer) -> dict[str, str]:
    """Keystone project ids: "a", "b"."""
    return {"a": keystone.projects["tidings-a"], "b": keystone.projects["tidings-b"]}
