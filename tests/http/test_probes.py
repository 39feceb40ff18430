"""GET /healthz and /readyz: probes for load balancers and service managers.

They need no header, show no project's data, and /readyz turns 503 with a
one-line reason while the storage does not answer, here a real Redis
stopped under a running server. /v2/ping keeps Zaqar's header rules.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.redis_server import RedisServer
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def on_redis() -> Iterator[tuple[ServerProcess, RedisServer]]:
    redis = RedisServer().start()
    # A short socket timeout: a stopped Redis is found out at once.
    server = ServerProcess(storage=f"{redis.url}?socket_timeout=2&socket_connect_timeout=2")
    try:
        server.start()
        yield server, redis
    finally:
        server.stop()
        redis.cleanup()


def test_probes_answer_without_headers(server_url: str) -> None:
    for path, body in (("/healthz", "ok"), ("/readyz", "ready")):
        answer = httpx.get(server_url + path, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text == body + "\n"
        assert httpx.head(server_url + path, timeout=10).status_code == 200


def test_zaqar_ping_keeps_its_header_rules(server_url: str) -> None:
    assert httpx.get(server_url + "/v2/ping", timeout=10).status_code == 400
    assert httpx.head(server_url + "/v2/health", timeout=10).status_code == 400


def test_readyz_says_why_while_the_storage_is_down(
        on_redis: tuple[ServerProcess, RedisServer]) -> None:
    server, redis = on_redis
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    redis.stop()
    try:
        answer = httpx.get(server.url + "/readyz", timeout=30)
        assert answer.status_code == 503
        assert answer.text == "not ready: the storage does not answer\n"
        # The process is up all the same.
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        redis.start()
    assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200
