"""uvicorn's httptools protocol with the timeouts it lacks (settings ``http``).

uvicorn arms its keep-alive timer only after a response, and cancels it on
any byte received: a client that opens connections and sends nothing, or
dribbles its headers a byte at a time (slowloris), holds them for ever.
This protocol adds:

- a header timeout: a request's line and headers must be complete within
  ``header_timeout`` seconds of the connection's start or of the request's
  first byte (then 408 and the connection is closed);
- a header size cap: a request line and headers of more than
  ``max_header_size`` bytes get 431 and the connection is closed, however
  they were written. Two counts enforce it: the bytes received while the
  head is incomplete (one header dribbled for ever never reaches the
  parser's callbacks), and the head's parsed size, added up in the
  parser's callbacks (a whole oversized head in one write is parsed in
  one go, and would otherwise be served);
- a body timeout: the body must be in within ``body_timeout`` seconds of
  the headers, or the connection is closed.

The deadlines are checked by one sweep per event loop (``Sweeper``), not
by a timer per request: arming a deadline is storing a float, where a
timer per request cost a heap push and a cancellation each time (about a
tenth of a ping). A deadline fires within ``sweep_interval`` after it
passes: at most a second, and a quarter of the shortest timeout when
that is smaller. The keep-alive wait between requests is such a deadline
too (uvicorn armed a timer after every response and cancelled it on the
next request's first byte): idle keep-alive connections are closed after
``keep_alive_timeout`` (``timeout_keep_alive``), within the sweep.

The settings are module state set by ``configure`` before the server
starts (uvicorn builds the protocol itself, from a class): the CLI sets
them, and so does each worker process of ``--workers N``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tidings.config import HttpSettings

log = logging.getLogger(__name__)

_settings = HttpSettings()


def configure(settings: HttpSettings) -> None:
    global _settings
    _settings = settings


def settings() -> HttpSettings:
    return _settings


def _response(status: bytes, text: str) -> bytes:
    body = text.encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


def sweep_interval(limits: HttpSettings) -> float:
    timeouts = [t for t in (limits.header_timeout, limits.body_timeout,
                            limits.keep_alive_timeout) if t > 0]
    return min([1.0, *(t / 4 for t in timeouts)])


class Sweeper:
    """Fires the expired deadlines of one event loop's connections, every
    ``interval`` seconds while there are connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.connections: set[GuardedHttpToolsProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: GuardedHttpToolsProtocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)

    def discard(self, connection: GuardedHttpToolsProtocol) -> None:
        self.connections.discard(connection)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            if 0 < connection.deadline <= now:
                connection.expire()
        self._timer = (self.loop.call_later(self.interval, self._sweep)
                       if self.connections else None)


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweeper] = (
    weakref.WeakKeyDictionary())


def sweeper_for(loop: asyncio.AbstractEventLoop) -> Sweeper:
    sweeper = _sweepers.get(loop)
    if sweeper is None:
        sweeper = _sweepers[loop] = Sweeper(loop, sweep_interval(_settings))
    return sweeper


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing an oversized head."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _settings
        # loop.time() after which on_deadline runs; 0: none.
        self.deadline = 0.0
        self._on_deadline: Callable[[], None] | None = None
        self._sweeper = sweeper_for(self.loop)
        self._awaiting_headers = True
        self._header_bytes = 0
        # Bytes of the current request's line and headers, as parsed.
        self._head_size = 0
        self._refused = False

    # --- deadlines ---------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        if seconds > 0:
            self.deadline = self.loop.time() + seconds
            self._on_deadline = callback
        else:
            self.deadline = 0.0

    def _disarm(self) -> None:
        self.deadline = 0.0

    def expire(self) -> None:
        """The deadline passed (called by the sweeper)."""
        self.deadline = 0.0
        if self._on_deadline is not None:
            self._on_deadline()

    def _header_timeout(self) -> None:
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_response(b"408 Request Timeout",
                                           "The request headers took too long."))
        self.transport.close()

    def _body_timeout(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # --- protocol interface --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # asyncio gives a stream transport here
        super().connection_made(transport)
        self._sweeper.add(self)
        # A new connection must start a request in time, too.
        self._arm(self._limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._sweeper.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (self._awaiting_headers and self._header_bytes > self._limits.max_header_size
                and not self.transport.is_closing()):
            self._refuse_headers()

    def _refuse_headers(self) -> None:
        self._refused = True
        self._disarm()
        self.transport.write(_response(b"431 Request Header Fields Too Large",
                                       "The request headers are too large."))
        self.transport.close()

    def _count_head(self, size: int) -> None:
        """Add to the parsed head's size; past the cap, answer 431 and stop
        the parser, so the request never reaches the application."""
        self._head_size += size
        if self._head_size > self._limits.max_header_size and not self._refused:
            self._refuse_headers()
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        # Stopping the parser (_HeadTooLarge) reaches uvicorn as a parser
        # error, answered 400: the 431 has been sent already.
        if not self._refused:
            super().send_400_response(msg)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the transport, with its own pings.
        self._disarm()
        self._sweeper.discard(self)
        self._awaiting_headers = False
        super().handle_websocket_upgrade()

    # --- parser callbacks ----------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        if not self._awaiting_headers:
            self._awaiting_headers = True
            self._header_bytes = 0
            self._arm(self._limits.header_timeout, self._header_timeout)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._arm(self._limits.body_timeout, self._body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, but the keep-alive wait is a swept deadline, not a
        # timer per response (see the module's docstring). No wait at all
        # (a timeout of 0: close after each response) stays uvicorn's.
        if self.timeout_keep_alive <= 0:
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._arm(self.timeout_keep_alive, self.timeout_keep_alive_handler)
