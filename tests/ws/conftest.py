"""Fixtures for the WebSocket tier: sockets to the session's real server.

``sock`` is parametrized: each test using it runs once with JSON text
frames and once with msgpack binary frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.ws.util import Socket, ws_url


@pytest.fixture(scope="session")
def url(server_url: str) -> str:
    return ws_url(server_url)


@pytest.fixture
def open_socket(url: str, headers: dict[str, str]) -> Iterator[Callable[..., Socket]]:
    """Open more sockets (closed after the test); default headers: this test's."""
    opened: list[Socket] = []

    def open_(encoding: str = "json", **kwargs: Any) -> Socket:
        kwargs.setdefault("headers", headers)
        sock = Socket(url, encoding, **kwargs)
        opened.append(sock)
        return sock

    yield open_
    for sock in opened:
        sock.close()


@pytest.fixture(params=["json", "msgpack"])
def encoding(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sock(open_socket: Callable[..., Socket], encoding: str) -> Socket:
    return open_socket(encoding)
