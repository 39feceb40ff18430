"""`serve --ws-port`: the API, WebSocket included, on a second port too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.ports import free_port
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def two_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    base: Path = tmp_path_factory.mktemp("ws-port")
    ws_port = free_port()
    proc = ServerProcess(
        storage=f"sqlite:///{base}/tidings.db",
        env={"TIDINGS_WEBSOCKET__PORT": str(ws_port)},
        log_path=base / "server.log",
    )
    proc.start()
    yield proc, ws_port
    proc.stop()


def test_the_socket_answers_on_the_second_port(two_ports: tuple[ServerProcess, int]) -> None:
    proc, ws_port = two_ports
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "ws-port"}
    with connect(f"ws://127.0.0.1:{ws_port}/") as socket:
        socket.send(json.dumps({"action": "queue_create", "headers": headers,
                                "body": {"queue_name": "apart"}}))
        reply = json.loads(socket.recv(timeout=10))
    assert reply["headers"]["status"] == 201
    # Both ports serve the same API over HTTP too, on the same storage.
    listing = httpx.get(proc.url + "/v2/queues", headers=headers, timeout=10).json()
    assert [q["name"] for q in listing["queues"]] == ["apart"]
    assert httpx.get(f"http://127.0.0.1:{ws_port}/v2/ping", headers=headers,
                     timeout=10).status_code == 204
