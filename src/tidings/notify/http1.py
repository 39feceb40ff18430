"""HTTP/1.1 POSTs over kept-alive connections, for webhooks.

A webhook needs one kind of request: a POST of a small body to an address
that was just checked, the status of the answer, and the connection kept
for the next one. httpx spent about 4 ms of CPU per notification on what a
webhook does not use (auth and redirect flows, anyio streams, a pool that
asks each of its connections whether its socket is readable before every
request, an SSL context and transport made per target). This module does
the one request on asyncio protocols and httptools' parser: the event loop
tells a connection when its peer closes it, so choosing an idle connection
costs nothing, and the parser is C.

What it keeps from the httpx sender: a connect timeout, a cap on
connections per pool, TLS verified against the name (SNI too) while the
socket goes to the checked address, no redirects followed, no proxies, and
at most MAX_RESPONSE_READ bytes of an answer read.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

import httptools

# Bytes of an answer's body read before the connection is given up on.
MAX_RESPONSE_READ = 64 * 1024
# An idle connection older than this is closed rather than reused: servers
# drop idle connections after a few seconds, and a request written into one
# they are closing is lost.
KEEPALIVE_SECONDS = 5.0


class HttpError(Exception):
    """The exchange failed after the connection was made."""


class ConnectFailed(HttpError):
    """No connection to this address: another address of the name may answer."""


class _Stale(HttpError):
    """A reused connection closed before any byte of the answer came: the
    server dropped it while idle, so a fresh connection is worth one try."""


class _Connection(asyncio.Protocol):
    """One connection, one request at a time; httptools calls the on_* methods."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        self.body_read = 0
        self.answered = False  # a byte of the current answer came
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio hands the stream transport it made

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the stream is out of step
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(HttpError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._finish(HttpError(f"invalid HTTP answer: {exc}"))

    def eof_received(self) -> bool:
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.status:
            # The status came; a body cut short by the close does not change it.
            self._finish(self.status)
        elif not self.answered:
            self._finish(_Stale("the server closed the connection before answering"))
        else:
            self._finish(HttpError("the server closed the connection mid-answer"))

    # --- httptools callbacks ------------------------------------------------

    def on_headers_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # a second answer to one request
            return
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body_read += len(body)
        if self.body_read > MAX_RESPONSE_READ:
            self._finish(self.status)
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            self.status = 0  # an interim answer (100 Continue): the real one follows
            return
        self.reusable = self.parser.should_keep_alive()
        self._finish(self.status)

    # --- use ----------------------------------------------------------------

    async def post(self, request: bytes) -> int:
        """Writes ``request`` and returns the answer's status."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.status = self.body_read = 0
        self.answered = self.reusable = False
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def _finish(self, outcome: int | Exception) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, Exception):
            self.reusable = False
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class HostPool:
    """The connections of one target (scheme, name, port), at most ``limit``
    at once, kept per checked address: a connection made and verified for
    one name never carries another name's requests."""

    def __init__(self, *, limit: int, connect_timeout: float,
                 tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.server_hostname = server_hostname
        self.limit = limit
        self.clock = clock
        self.closed = False
        self._gate = asyncio.Semaphore(limit)
        self._idle: dict[str, list[_Connection]] = {}

    async def post(self, address: str, port: int, request: bytes) -> int:
        """Sends ``request`` to ``address`` and returns the answer's status.
        Raises ConnectFailed (try another address) or HttpError."""
        async with self._gate:
            connection = self._take_idle(address)
            if connection is not None:
                try:
                    return await self._exchange(address, connection, request)
                except _Stale:
                    pass  # dropped while idle: once more on a fresh connection
            connection = await self._connect(address, port)
            try:
                return await self._exchange(address, connection, request)
            except _Stale as exc:
                raise HttpError(str(exc)) from None

    def _take_idle(self, address: str) -> _Connection | None:
        idle = self._idle.get(address)
        oldest = self.clock() - KEEPALIVE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since > oldest:
                return connection
            connection.close()
        return None

    async def _connect(self, address: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, address, port, ssl=self.tls,
                    server_hostname=self.server_hostname if self.tls else None)
        except TimeoutError:
            raise ConnectFailed(f"{address}: no connection in {self.connect_timeout:g}s") from None
        except OSError as exc:  # refused, unreachable, TLS verification (SSLError)
            raise ConnectFailed(f"{address}: {exc or type(exc).__name__}") from None
        return connection

    async def _exchange(self, address: str, connection: _Connection, request: bytes) -> int:
        try:
            status = await connection.post(request)
        except BaseException:
            # Timed out, cancelled or broken: the stream is out of step.
            connection.close()
            raise
        if connection.reusable and not connection.closed and not self.closed:
            connection.idle_since = self.clock()
            self._idle.setdefault(address, []).append(connection)
        else:
            connection.close()
        return status

    def close_expired(self) -> None:
        oldest = self.clock() - KEEPALIVE_SECONDS
        for address, idle in list(self._idle.items()):
            kept = [c for c in idle if not c.closed and c.idle_since > oldest]
            for connection in idle:
                if connection not in kept:
                    connection.close()
            if kept:
                self._idle[address] = kept
            else:
                del self._idle[address]

    @property
    def idle(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Closes the idle connections; those in use close when their
        request ends."""
        self.closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def encode_request(path: str, headers: dict[str, str], content: bytes) -> bytes:
    """A POST with a Content-Length body. Header names and values were
    checked by the caller (no CR, LF or non-token names)."""
    lines = [f"POST {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(content)}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + content
