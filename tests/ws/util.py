"""A small synchronous client for the WebSocket API, for the tests.

It uses the ``websockets`` library's client and the ``msgpack`` package, so
the server's codec (msgspec) is checked against independent ones.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import msgpack
from websockets.sync.client import connect


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/"


@dataclass
class Reply:
    status: int
    body: Any
    request: dict[str, Any]
    raw: dict[str, Any]


def encode(document: Any, encoding: str) -> str | bytes:
    return json.dumps(document) if encoding == "json" else msgpack.packb(document)


def decode(frame: str | bytes) -> Any:
    """A reply, checking that its frame type is the one of its encoding."""
    return json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame)


class Socket:
    def __init__(self, url: str, encoding: str = "json",
                 headers: dict[str, str] | None = None) -> None:
        self.encoding = encoding
        self.headers = headers or {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "tests"}
        self._stack = ExitStack()
        self.conn = self._stack.enter_context(connect(url, max_size=None, open_timeout=10))

    def send(self, action: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> None:
        request: dict[str, Any] = {"action": action,
                                   "headers": self.headers if headers is None else headers}
        if body is not None:
            request["body"] = body
        self.conn.send(encode(request, self.encoding))

    def recv(self, timeout: float = 10) -> Reply:
        frame = self.conn.recv(timeout)
        assert isinstance(frame, str) == (self.encoding == "json"), type(frame)
        raw = decode(frame)
        assert set(raw) == {"request", "body", "headers"}, raw
        return Reply(raw["headers"]["status"], raw["body"], raw["request"], raw)

    def call(self, action: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        self.send(action, body, headers)
        return self.recv()

    def ok(self, action: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        """Call, check the status, return the reply body."""
        reply = self.call(action, body)
        assert reply.status == status, reply.raw
        return reply.body

    def post(self, queue: str, *bodies: Any, ttl: int = 300) -> list[str]:
        messages = [{"body": body, "ttl": ttl} for body in bodies]
        return self.ok("message_post", {"queue_name": queue, "messages": messages},
                       201)["message_ids"]

    def close(self) -> None:
        self._stack.close()


def assert_error(reply: Reply, status: int, title: str | None = None) -> None:
    """An error from an operation: Zaqar's {"exception", "error"} with the
    HTTP transport's title."""
    assert reply.status == status, reply.raw
    assert isinstance(reply.body, dict) and set(reply.body) == {"exception", "error"}, reply.raw
    assert reply.body["exception"], reply.raw
    if title is not None:
        assert reply.body["error"] == title, reply.raw


# --- a bare socket, for clients that misbehave on purpose --------------------


def raw_connect(url: str, timeout: float = 5) -> socket.socket:
    """Open a WebSocket by hand: no library answers pings or closes it nicely."""
    host, _, port = url.removeprefix("ws://").rstrip("/").partition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked, final client frame."""
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received
