"""uvicorn's httptools protocol with the timeouts it lacks (settings ``http``).

uvicorn arms its keep-alive timer only after a response, and cancels it on
any byte received: a client that opens connections and sends nothing, or
dribbles its headers a byte at a time (slowloris), holds them for ever.
This protocol adds:

- a header timeout: a request's line and headers must be complete within
  ``header_timeout`` seconds of the connection's start or of the request's
  first byte (then 408 and the connection is closed);
- a header size cap: more than ``max_header_size`` bytes without the end
  of the headers gets 431 and the connection is closed;
- a body timeout: the body must be in within ``body_timeout`` seconds of
  the headers, or the connection is closed.

Idle keep-alive connections are closed by uvicorn itself after
``keep_alive_timeout`` (``timeout_keep_alive``). The settings are module
state set by ``configure`` before the server starts (uvicorn builds the
protocol itself, from a class): the CLI sets them, and so does each worker
process of ``--workers N``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _settings
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0

    # --- timers ------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_response(b"408 Request Timeout",
                                           "The request headers took too long."))
        self.transport.close()

    def _body_timeout(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # --- protocol interface --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A new connection must start a request in time, too.
        self._arm(self._limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (self._awaiting_headers and self._header_bytes > self._limits.max_header_size
                and not self.transport.is_closing()):
            self._disarm()
            self.transport.write(_response(b"431 Request Header Fields Too Large",
                                           "The request headers are too large."))
            self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the transport, with its own pings.
        self._disarm()
        self._awaiting_headers = False
        super().handle_websocket_upgrade()

    # --- parser callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
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
