"""The keep-alive wait between requests is a swept deadline, not a timer
per response (tidings.transport.http.protocol): what a client sees of a
connection's life is unchanged."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http.test_limits import (
    closed_within,
    connect,
    read_response,
    request_head,
    start,
    status_of,
)
from tests.support.server import ServerProcess

# --- through a real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start(tmp_path_factory.mktemp("writes"), {})
    yield proc
    proc.stop()


def headers() -> dict[str, str]:
    return {"X-Project-ID": f"w-{uuid.uuid4().hex[:10]}", "Client-ID": str(uuid.uuid4())}


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` whole responses with a Content-Length, in order."""
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed before the response"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed inside the body"
            rest += chunk
        answers.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return answers


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    sock = connect(server)
    h = headers()
    body = b'{"messages": [{"body": 1, "ttl": 60}]}'
    post = request_head("POST", "/v2/queues/piped/messages",
                        {**h, "Content-Type": "application/json",
                         "Content-Length": str(len(body))}) + body
    sock.sendall(post + request_head("GET", "/v2/queues/piped/stats", h) + post)
    first, stats, third = read_responses(sock, 3)
    assert [status_of(r) for r in (first, stats, third)] == [201, 200, 201]
    assert b'"free": 1' in stats or b'"free":1' in stats
    sock.close()


def test_a_head_request_gets_its_head(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(request_head("HEAD", "/v2/ping", headers()))
    raw = read_response(sock)
    assert status_of(raw) == 204
    sock.sendall(request_head("GET", "/v2/queues", headers()))  # the connection goes on
    assert status_of(read_response(sock)) == 200
    sock.close()


def test_expect_100_continue_is_answered_before_the_body(server: ServerProcess) -> None:
    sock = connect(server)
    body = b'{"messages": [{"body": "x", "ttl": 60}]}'
    sock.sendall(request_head("POST", "/v2/queues/cont/messages",
                              {**headers(), "Content-Type": "application/json",
                               "Content-Length": str(len(body)), "Expect": "100-continue"}))
    assert status_of(read_response(sock)) == 100
    sock.sendall(body)
    [answer] = read_responses(sock, 1)
    assert status_of(answer) == 201
    sock.close()


def test_no_keep_alive_wait_closes_after_each_response(tmp_path: Path) -> None:
    proc = start(tmp_path, {"TIDINGS_HTTP__KEEP_ALIVE_TIMEOUT": "0"})
    try:
        sock = connect(proc)
        sock.sendall(request_head("GET", "/v2/queues", headers()))
        assert status_of(read_response(sock)) == 200
        assert closed_within(sock, 2)
        sock.close()
    finally:
        proc.stop()
