"""Publish and listen within one process (DataDriver.publish / listen).

SQLite has no server to carry messages between processes, so its drivers
share a bus per database file within the process: the server and its
delivery worker (one process) hear each other, other processes do not. The
receiver count it returns is exact, so a publisher knows at once that
nobody here listens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from tidings.storage.base import Receive

log = logging.getLogger(__name__)


class LocalBus:
    def __init__(self) -> None:
        self._receivers: dict[str, set[Receive]] = {}

    async def publish(self, channel: str, message: bytes) -> int:
        receivers = list(self._receivers.get(channel, ()))
        loop = asyncio.get_running_loop()
        for receive in receivers:
            # Later, as a network bus would: the publisher never runs a
            # receiver's code inside its own call.
            loop.call_soon(_call, receive, message)
        return len(receivers)

    def listen(self, channel: str, receive: Receive) -> AbstractAsyncContextManager[None]:
        return self._listen(channel, receive)

    @asynccontextmanager
    async def _listen(self, channel: str, receive: Receive) -> AsyncIterator[None]:
        self._receivers.setdefault(channel, set()).add(receive)
        try:
            yield
        finally:
            receivers = self._receivers.get(channel)
            if receivers is not None:
                receivers.discard(receive)
                if not receivers:
                    del self._receivers[channel]


def _call(receive: Receive, message: bytes) -> None:
    try:
        receive(message)
    except Exception:  # one receiver's bug must not stop the others
        log.exception("a bus receiver failed")


_BUSES: dict[str, LocalBus] = {}


def bus_for(key: str) -> LocalBus:
    """The bus of one database (e.g. an SQLite file's resolved path)."""
    bus = _BUSES.get(key)
    if bus is None:
        bus = _BUSES[key] = LocalBus()
    return bus
