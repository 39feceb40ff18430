"""Fixtures for the auth tier: Tidings servers using the session's real
Keystone (the ``keystone`` fixture in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.keystone import KeystoneServer, auth_env
from tests.support.server import ServerProcess

SECRET = "signing-secret-for-tests"


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
