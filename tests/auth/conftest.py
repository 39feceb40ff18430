"""Fixtures for the auth tier: a real Keystone and Tidings servers using it.

Keystone starts once a session (tests/support/keystone.py). Under CI=true it
must start; elsewhere a machine that cannot install it (no network) skips
the tests that need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.keystone import KeystoneServer, auth_env, start_keystone
from tests.support.server import ServerProcess

SECRET = "signing-secret-for-tests"


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


def start_server(base: Path, env: dict[str, str]) -> ServerProcess:
    proc = ServerProcess(storage=f"sqlite:///{base}/tidings.db", env=env,
                         log_path=base / "server.log")
    proc.start()
    return proc


DEFAULT_POOL = "default"


def pooling_env(base: Path) -> dict[str, str]:
    """Pooling on, with the server's own storage (``<base>/tidings.db``, the
    URL start_server gives) registered as the first pool, named "default",
    with `tidings pool add`. With pooling on ``storage`` is not used: without
    a pool every queue operation would answer 503 (no pools registered)."""
    env = {"TIDINGS_POOLING__ENABLED": "true",
           "TIDINGS_POOLING__CONTROL_STORAGE": f"sqlite:///{base}/control.db"}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    subprocess.run([sys.executable, "-m", "tidings", "pool", "add", DEFAULT_POOL,
                    f"sqlite:///{base}/tidings.db"], env={**inherited, **env}, check=True,
                   capture_output=True, timeout=60)
    return env


@pytest.fixture(scope="session")
def ks_server(tmp_path_factory: pytest.TempPathFactory, keystone: KeystoneServer
              ) -> Iterator[ServerProcess]:
    """Tidings with auth=keystone and pre-signed URLs. Tokens are cached for
    one second only, so that the revocation test need not wait long. Pooling
    is on (the admin API, /v2/pools and /v2/flavors, exists only then), over
    one pool: the storage start_server gives."""
    base = tmp_path_factory.mktemp("ks-server")
    proc = start_server(base, auth_env(
        keystone, TIDINGS_AUTH__SECRET_KEY=SECRET, TIDINGS_AUTH__KEYSTONE__CACHE_TIME="1",
        **pooling_env(base)))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tokens(keystone: KeystoneServer) -> dict[str, str]:
    """A token for each test user (valid for the hour the session lasts)."""
    return {user: keystone.token(user) for user in ("a-member", "a-admin", "b-member")}


@pytest.fixture(scope="session")
def projects(keystone: KeystoneServer) -> dict[str, str]:
    """Keystone project ids: "a", "b"."""
    return {"a": keystone.projects["tidings-a"], "b": keystone.projects["tidings-b"]}


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def as_user(ks_server: ServerProcess, tokens: dict[str, str]
            ) -> Iterator[Callable[..., httpx.Client]]:
    """``as_user("a-member")``: an HTTP client with that user's token."""
    clients: list[httpx.Client] = []

    def make(user: str, server: ServerProcess = ks_server, **headers: str) -> httpx.Client:
        client = httpx.Client(base_url=server.url, timeout=10, headers={
            "X-Auth-Token": tokens[user], "Client-ID": str(uuid.uuid4()), **headers})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
