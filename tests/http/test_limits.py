"""Abuse limits: body size, slow and idle connections, quotas and rates.

Each group runs against its own server process configured with small
limits (settings ``http`` and ``quotas`` through TIDINGS_* variables).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.ws.util import Socket, ws_url

HEADER_TIMEOUT = 1.5
KEEP_ALIVE = 1.0
BODY_TIMEOUT = 2.0
MAX_HEADER_SIZE = 16 * 1024
POST_CAP = 256 * 1024


def start(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db", env=env,
                         log_path=tmp_path / "server.log")
    return proc.start()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start(tmp_path_factory.mktemp("limited"), {
        "TIDINGS_HTTP__HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "TIDINGS_HTTP__KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE),
        "TIDINGS_HTTP__BODY_TIMEOUT": str(BODY_TIMEOUT),
        "TIDINGS_HTTP__MAX_HEADER_SIZE": str(MAX_HEADER_SIZE),
        "TIDINGS_QUOTAS__MAX_QUEUES_PER_PROJECT": "2",
        "TIDINGS_QUOTAS__MAX_MESSAGES_PER_QUEUE": "5",
    })
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start(tmp_path_factory.mktemp("rated"), {
        "TIDINGS_QUOTAS__REQUESTS_PER_SECOND_PER_PROJECT": "5",
        "TIDINGS_QUOTAS__BURST": "5",
    })
    yield proc
    proc.stop()


def headers() -> dict[str, str]:
    return {"X-Project-ID": f"lim-{uuid.uuid4().hex[:10]}", "Client-ID": str(uuid.uuid4())}


def connect(proc: ServerProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=timeout)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """Everything until the server closes or a whole response head is in."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds``
    (whatever it sent before closing is skipped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def request_head(method: str, path: str, hdrs: dict[str, str], extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# --- bodies -------------------------------------------------------------------


def test_declared_huge_body_is_refused_before_it_is_sent(limited: ServerProcess) -> None:
    sock = connect(limited)
    head = request_head("POST", "/v2/queues/big/messages",
                        {**headers(), "Content-Type": "application/json",
                         "Content-Length": str(10 * 1024 * 1024)})
    started = time.monotonic()
    sock.sendall(head + b'{"messages": [')  # and then nothing more, slowly
    raw = read_response(sock)
    assert status_of(raw) in (400, 413)
    assert time.monotonic() - started < 1.0
    sock.close()


def test_chunked_body_without_length_is_cut_at_the_cap(limited: ServerProcess) -> None:
    sock = connect(limited)
    sock.sendall(request_head("POST", "/v2/queues/chunked/messages",
                              {**headers(), "Content-Type": "application/json",
                               "Transfer-Encoding": "chunked"}))
    chunk = b"x" * 16384
    sent = 0
    started = time.monotonic()
    # A little over the cap, never the final chunk: the answer must come anyway.
    while sent <= POST_CAP + len(chunk):
        sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sent += len(chunk)
    raw = read_response(sock)
    assert status_of(raw) in (400, 413), raw[:200]
    assert b"too large" in raw or status_of(raw) == 413 or b"\r\n\r\n" in raw
    assert time.monotonic() - started < 2.0
    sock.close()


def test_slowly_dribbled_body_is_cut_after_the_body_timeout(limited: ServerProcess) -> None:
    sock = connect(limited)
    sock.sendall(request_head("POST", "/v2/queues/slow/messages",
                              {**headers(), "Content-Type": "application/json",
                               "Content-Length": "1000"}) + b'{"messages": [')
    assert closed_within(sock, BODY_TIMEOUT + 2)
    sock.close()


# --- headers and idle connections -----------------------------------------------


def test_slowloris_connections_do_not_stop_normal_clients(limited: ServerProcess) -> None:
    slow = [connect(limited) for _ in range(200)]
    for sock in slow:
        sock.sendall(b"GET /v2/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    stop = threading.Event()

    def dribble() -> None:
        n = 0
        while not stop.is_set():
            for sock in slow:
                try:
                    sock.sendall(b"X-Slow-%d: a\r\n" % n)
                except OSError:
                    pass  # closed by the server: what we want
            n += 1
            stop.wait(0.2)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=limited.url, headers=headers(), timeout=5) as http:
            for _ in range(10):
                started = time.monotonic()
                assert http.get("/v2/queues").status_code == 200
                assert time.monotonic() - started < 1.0
                time.sleep(0.05)
        # The dribblers never finish their headers: they are cut.
        time.sleep(HEADER_TIMEOUT)
        deadline = time.monotonic() + 3
        still_open = slow
        while still_open and time.monotonic() < deadline:
            still_open = [s for s in still_open if not closed_within(s, 0.01)]
        assert not still_open, f"{len(still_open)} slow connections still open"
    finally:
        stop.set()
        thread.join(5)
        for sock in slow:
            sock.close()


def test_connection_that_sends_nothing_is_closed(limited: ServerProcess) -> None:
    sock = connect(limited)
    started = time.monotonic()
    assert closed_within(sock, HEADER_TIMEOUT + 2)
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.2
    sock.close()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(limited: ServerProcess) -> None:
    sock = connect(limited)
    sock.sendall(request_head("GET", "/v2/queues", headers()))
    raw = read_response(sock)
    assert status_of(raw) == 200
    started = time.monotonic()
    assert closed_within(sock, KEEP_ALIVE + 2)
    assert time.monotonic() - started >= KEEP_ALIVE - 0.3
    sock.close()


def test_keep_alive_connection_serves_several_requests(limited: ServerProcess) -> None:
    with httpx.Client(base_url=limited.url, headers=headers(), timeout=5) as http:
        for _ in range(3):
            assert http.get("/v2/queues").status_code == 200
            time.sleep(KEEP_ALIVE / 3)


def test_oversized_headers_get_431(limited: ServerProcess) -> None:
    sock = connect(limited)
    sock.sendall(b"GET /v2/queues HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                 + b"a" * (MAX_HEADER_SIZE + 1024))
    raw = read_response(sock)
    assert status_of(raw) == 431
    assert closed_within(sock, 2)
    sock.close()


def oversized_request(kind: str) -> bytes:
    """A whole request (head ended, ready to be served) whose headers are
    over the cap: one 100 KB Client-ID, or small headers a little over it
    (so that sent in pieces, the piece that crosses the cap ends the head)."""
    hdrs = headers()
    if kind == "one-header":
        hdrs["Client-ID"] = "a" * (100 * 1024)
    else:
        hdrs.update({f"X-Pad-{i}": "b" * 90 for i in range(MAX_HEADER_SIZE // 100 + 20)})
    return request_head("GET", "/v2/queues", hdrs)


@pytest.mark.parametrize("kind", ["one-header", "many-headers"])
@pytest.mark.parametrize("writes", ["one-write", "in-pieces"])
def test_headers_over_the_cap_are_refused_however_they_are_written(
        limited: ServerProcess, kind: str, writes: str) -> None:
    """The whole head in one write used to be parsed and served (the cap
    was only checked between writes); in pieces, the last piece completed
    it before the check. 431 either way, and no request runs."""
    request = oversized_request(kind)
    sock = connect(limited)
    piece = len(request) if writes == "one-write" else 7000
    try:
        for start in range(0, len(request), piece):
            sock.sendall(request[start:start + piece])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server refused before the rest was sent: its answer is in
    raw = read_response(sock)
    assert status_of(raw) == 431, raw[:200]
    assert closed_within(sock, 2)
    sock.close()


def test_an_error_echoes_only_a_short_prefix_of_a_bad_value(limited: ServerProcess) -> None:
    bad = "z" * (MAX_HEADER_SIZE // 2)
    with httpx.Client(base_url=limited.url, timeout=5) as http:
        resp = http.get("/v2/queues/q/messages",
                        headers={**headers(), "Client-ID": bad})
        assert resp.status_code == 400, resp.text
        assert resp.json()["title"] == "Wrong UUID value"
        assert len(resp.content) < 400, resp.text[:300]
        missing = http.get(f"/v2/queues/q/messages/{bad}", headers=headers())
        assert missing.status_code == 404
        assert len(missing.content) < 400, missing.text[:300]
    sock = Socket(ws_url(limited.url), headers=headers())
    try:
        reply = sock.call("message_get", {"queue_name": "q", "message_id": bad})
        assert reply.status == 404
        assert len(str(reply.body)) < 400, str(reply.body)[:300]
    finally:
        sock.close()


# --- quotas -------------------------------------------------------------------


def assert_quota_error(resp: httpx.Response) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json()["title"] == "Quota exceeded"
    assert "quota" in resp.json()["description"].lower()


def queue_names(http: httpx.Client) -> list[str]:
    return [q["name"] for q in http.get("/v2/queues", params={"limit": 20}).json()["queues"]]


def test_queue_quota_refuses_the_next_queue_and_writes_nothing(limited: ServerProcess) -> None:
    with httpx.Client(base_url=limited.url, headers=headers(), timeout=5) as http:
        assert http.put("/v2/queues/a").status_code == 201
        assert http.put("/v2/queues/b").status_code == 201
        assert_quota_error(http.put("/v2/queues/c", json={"x": 1}))
        # Posting creates queues too.
        assert_quota_error(http.post("/v2/queues/d/messages",
                                     json={"messages": [{"body": 1, "ttl": 60}]}))
        assert queue_names(http) == ["a", "b"]
        assert http.get("/v2/queues/c/stats").json()["messages"]["total"] == 0
        # An existing queue is no new queue.
        assert http.put("/v2/queues/a").status_code == 204
        assert http.post("/v2/queues/a/messages",
                         json={"messages": [{"body": 1}]}).status_code == 201
        # After a delete there is room again.
        assert http.delete("/v2/queues/b").status_code == 204
        assert http.put("/v2/queues/c").status_code == 201
    with httpx.Client(base_url=limited.url, headers=headers(), timeout=5) as other:
        assert other.put("/v2/queues/a").status_code == 201  # quotas are per project


def test_message_quota_refuses_a_post_that_would_pass_it(limited: ServerProcess) -> None:
    with httpx.Client(base_url=limited.url, headers=headers(), timeout=5) as http:
        def post(n: int) -> httpx.Response:
            return http.post("/v2/queues/m/messages",
                             json={"messages": [{"body": i} for i in range(n)]})

        assert post(3).status_code == 201
        assert_quota_error(post(3))  # 6 > 5: all or none
        stats = http.get("/v2/queues/m/stats").json()["messages"]
        assert stats["total"] == 3
        assert post(2).status_code == 201
        assert_quota_error(post(1))
        assert http.get("/v2/queues/m/stats").json()["messages"]["total"] == 5
        # Room again after a pop.
        assert http.delete("/v2/queues/m/messages", params={"pop": 2}).status_code == 200
        assert post(2).status_code == 201


def test_quota_errors_over_websocket(limited: ServerProcess) -> None:
    hdrs = headers()
    sock = Socket(ws_url(limited.url), "json", headers=hdrs)
    try:
        for name in ("w1", "w2", "w3"):
            sock.send("queue_create", {"queue_name": name})
            reply = sock.recv()
        assert reply.status == 403
        assert reply.body["error"] == "Quota exceeded"
        sock.send("queue_list", {})
        assert [q["name"] for q in sock.recv().body["queues"]] == ["w1", "w2"]
    finally:
        sock.close()


# --- rate limit ---------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(rated: ServerProcess) -> None:
    with httpx.Client(base_url=rated.url, headers=headers(), timeout=5) as http:
        statuses = []
        for _ in range(15):
            resp = http.get("/v2/queues")
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                limited = resp
        assert statuses[:5] == [200] * 5  # the burst
        assert 429 in statuses
        assert limited.json()["title"] == "Too many requests"
        assert int(limited.headers["Retry-After"]) >= 1
        assert "X-Request-ID" in limited.headers
        # Another project has its own bucket.
        with httpx.Client(base_url=rated.url, headers=headers(), timeout=5) as other:
            assert other.get("/v2/queues").status_code == 200
        # The bucket refills at the rate.
        time.sleep(1.0)
        assert http.get("/v2/queues").status_code == 200


def test_requests_without_a_project_are_not_limited(rated: ServerProcess) -> None:
    for _ in range(15):
        assert httpx.get(rated.url + "/").status_code in (200, 300)


def test_rate_limit_over_websocket(rated: ServerProcess) -> None:
    sock = Socket(ws_url(rated.url), "json", headers=headers())
    try:
        statuses = []
        for _ in range(12):
            sock.send("queue_list", {})
            statuses.append(sock.recv().status)
        assert statuses[:5] == [200] * 5
        assert 429 in statuses
    finally:
        sock.close()
