"""A minimal HTTP/1.1 keep-alive client, one request in flight per connection.

Why not httpx or aiohttp: their per-request work (header objects, URL
parsing, cookie jars, middleware) costs more CPU than the server spends
answering a ping, so the bench would end up measuring itself. Here a request
is a ready-made ``bytes`` object written to the socket, and the response is
parsed by ``httptools`` (llhttp in C), keeping only the status and the body.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httptools


class HttpError(Exception):
    """The connection failed: refused, lost, or the response was malformed."""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    keep_alive: bool


def build_request(
    method: str,
    target: str,
    host: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> bytes:
    """Serialise one request; callers build it once and send it many times."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


class _ResponseProtocol(asyncio.Protocol):
    """Feeds bytes to llhttp and completes one future per response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._chunks: list[bytes] = []
        self.closed = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # asyncio hands the stream transport it made

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        # A response still owed can never arrive; let connection_lost fail it.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection lost: {exc or 'closed by peer'}"))

    # llhttp callbacks (called from inside feed_data)

    def on_message_begin(self) -> None:
        self._chunks = []

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return  # a response nobody asked for; nothing waits on it
        waiter.set_result(
            Response(
                self._parser.get_status_code(),
                b"".join(self._chunks),
                self._parser.should_keep_alive(),
            )
        )

    # used by HttpConnection

    def send(self, data: bytes) -> asyncio.Future[Response]:
        if self._waiter is not None:
            raise RuntimeError("a request is already in flight on this connection")
        waiter = self._loop.create_future()
        self._waiter = waiter
        assert self._transport is not None
        self._transport.write(data)
        return waiter

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpConnection:
    """One keep-alive connection; reconnects lazily on the next request."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl.create_default_context() if tls else None
        self._server_hostname = server_hostname if tls else None
        self._proto: _ResponseProtocol | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._proto is not None and not self._proto.closed

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(
                lambda: _ResponseProtocol(loop),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
            )
        except OSError as exc:
            raise HttpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        self._proto = proto
        self.connects += 1

    async def request(self, data: bytes) -> Response:
        """Send pre-built request bytes and wait for the whole response."""
        if not self.connected:
            await self.connect()
        assert self._proto is not None
        response = await self._proto.send(data)
        if not response.keep_alive:
            self.close()  # the server said so; the next request reconnects
        return response

    def close(self) -> None:
        if self._proto is not None:
            self._proto.abort()
            self._proto = None
