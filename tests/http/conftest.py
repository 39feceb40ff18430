"""Fixtures for the HTTP tier."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.http.util import other_client
from tests.support.server import ServerProcess


@pytest.fixture
def peer(http: httpx.Client) -> Iterator[httpx.Client]:
    """Another client (Client-ID) in the same project: it sees ``http``'s
    messages without echo."""
    with other_client(http) as client:
        yield client


@pytest.fixture(autouse=True)
def no_server_tracebacks(server: ServerProcess) -> Iterator[None]:
    """No test of this tier may make the server log a traceback (an
    unexpected error: a 500 the client may not even have seen)."""
    log = server.log_path
    start = log.stat().st_size if log is not None and log.exists() else 0
    yield
    if log is None or not log.exists():
        return
    with open(log, "rb") as fh:
        fh.seek(start)
        new = fh.read().decode("utf-8", "replace")
    assert "Traceback" not in new, new[-4000:]
