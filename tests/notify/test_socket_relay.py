"""WebSocket notifications across processes, on SQLite, Redis and PostgreSQL.

A socket lives in one `tidings serve` process; the delivery owed to it is
sent by whichever worker leases it. Here the process holding the socket
runs no worker, so every frame it gets was relayed over the backend's
bus by another process (notify/relay.py):

- two `tidings serve` processes on one database: a message posted through
  B reaches a socket subscribed on A (B's worker sends it);
- a `tidings notifier` process beside a server: it holds no socket, and
  the server's sockets still get their messages.

Each message arrives once: the delivery is recorded as delivered only
after the holder acknowledged writing the frame, and not retried after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notify.test_backends import BACKENDS, SERVER_ENV, fresh_storage, post
from tests.support.server import ServerProcess
from tests.ws.util import Socket, ws_url

WORKER_OFF = {"TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER": "false"}
QUIET = 0.5


@pytest.fixture(params=["sqlite", *BACKENDS])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # Processes on one file meet on its bus (storage/sqlite/bus.py).
        return f"sqlite:///{tmp_path}/shared.db"
    return fresh_storage(request.param)


def log_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.stop()
    for server in servers:
        assert server.log_path is not None
        assert "Traceback" not in log_of(server.log_path), log_of(server.log_path)[-4000:]


def serve(started: list[ServerProcess], storage: str, tmp_path: Path, name: str,
          **env: str) -> ServerProcess:
    proc = ServerProcess(storage=storage, env={**SERVER_ENV, **env},
                         log_path=tmp_path / f"{name}.log")
    started.append(proc)
    return proc.start()


@pytest.fixture
def notifier(tmp_path: Path) -> Iterator[callable]:
    """Starts `tidings notifier` on a storage URL; stopped with SIGTERM."""
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "notifier.log"

    def start(storage: str) -> subprocess.Popen[bytes]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tidings", "notifier", "--storage", storage],
                env={**inherited, **SERVER_ENV, "TIDINGS_LOG_LEVEL": "info"},
                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_for(lambda: "delivering notifications" in log_of(log_path) or proc.poll() is not None,
                 20, "the notifier to start")
        assert proc.poll() is None, log_of(log_path)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert "Traceback" not in log_of(log_path), log_of(log_path)[-4000:]


def wait_for(condition: callable, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def subscribed_socket(server: ServerProcess, project: str, queue: str) -> Socket:
    """A socket on ``server`` subscribed to ``queue`` (itself the subscriber)."""
    sock = Socket(ws_url(server.url),
                  headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": project})
    sock.ok("subscription_create", {"queue_name": queue, "ttl": 3600}, 201)
    return sock


def pushed(sock: Socket, count: int, timeout: float = 15) -> list[dict]:
    return [json.loads(sock.conn.recv(timeout)) for _ in range(count)]


def http(server: ServerProcess, project: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10,
                        headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": project})


def assert_quiet(sock: Socket) -> None:
    """Nothing more arrives: no delivery was sent twice."""
    with pytest.raises(TimeoutError):
        sock.conn.recv(QUIET)


def test_a_post_through_one_process_reaches_a_socket_of_another(
        storage: str, started: list[ServerProcess], tmp_path: Path) -> None:
    holder = serve(started, storage, tmp_path, "holder", **WORKER_OFF)
    sender = serve(started, storage, tmp_path, "sender")
    project = f"relay-{uuid.uuid4().hex[:8]}"
    sock = subscribed_socket(holder, project, "events")
    try:
        with http(sender, project) as c:
            began = time.monotonic()
            ids = post(c, "events", {"n": 1}, {"n": 2}, {"n": 3})
            frames = pushed(sock, 3)
            print(f"\n3 frames relayed in {(time.monotonic() - began) * 1000:.0f} ms")
        assert sorted(f["body"]["n"] for f in frames) == [1, 2, 3]
        for frame in frames:
            assert frame["Message_Type"] == "Notification"
            assert frame["queue_name"] == "events"
            assert frame["ttl"] == 600
        assert len(ids) == 3
        assert_quiet(sock)
    finally:
        sock.close()


def test_a_standalone_notifier_pushes_to_the_servers_sockets(
        storage: str, started: list[ServerProcess], tmp_path: Path, notifier) -> None:
    server = serve(started, storage, tmp_path, "server", **WORKER_OFF)
    project = f"relay-{uuid.uuid4().hex[:8]}"
    sock = subscribed_socket(server, project, "alerts")
    try:
        with http(server, project) as c:
            # Posted before the notifier runs: the outbox holds it until then.
            post(c, "alerts", "early")
            assert_quiet(sock)
            notifier(storage)
            post(c, "alerts", "late")
            frames = pushed(sock, 2)
        assert sorted(f["body"] for f in frames) == ["early", "late"]
        assert all(f["Message_Type"] == "Notification" for f in frames)
        assert_quiet(sock)
    finally:
        sock.close()


def test_sockets_on_two_processes_each_get_their_own_copy(
        storage: str, started: list[ServerProcess], tmp_path: Path, notifier) -> None:
    first = serve(started, storage, tmp_path, "first", **WORKER_OFF)
    second = serve(started, storage, tmp_path, "second", **WORKER_OFF)
    notifier(storage)
    project = f"relay-{uuid.uuid4().hex[:8]}"
    a = subscribed_socket(first, project, "fanout")
    b = subscribed_socket(second, project, "fanout")
    try:
        with http(second, project) as c:
            post(c, "fanout", {"from": "a"})
        assert [f["body"] for f in pushed(a, 1)] == [{"from": "a"}]
        assert [f["body"] for f in pushed(b, 1)] == [{"from": "a"}]
        assert_quiet(a)
        assert_quiet(b)
    finally:
        a.close()
        b.close()
