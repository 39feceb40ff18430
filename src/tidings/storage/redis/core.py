"""What the Redis controllers need of their driver, as a protocol.

The controllers (queues.py, messages.py, claims.py, notify.py, watch.py)
are built by the driver and call back into it for the client, the keys,
the deadlines and the scripts; typing them against this protocol instead
of ``RedisDriver`` keeps the driver the only module that imports them all,
so the package has no import circle.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from tidings.storage.base import Clock
from tidings.storage.redis import scripts
from tidings.storage.redis.keys import Keys


class DueHints(Protocol):
    """The deliveries' due hints (RedisDeliveries) as other controllers
    move them."""

    async def lower(self, member: str, due: float) -> None: ...

    async def settle(self, member: str, head: Any) -> None: ...


class RedisCore(Protocol):
    """The part of RedisDriver its controllers use."""

    client_url: str
    cluster: bool
    keys: Keys
    clock: Clock
    socket_timeout: float
    connect_timeout: float
    where: str

    @property
    def deliveries(self) -> DueHints: ...

    @property
    def client(self) -> Any: ...

    def guard(self) -> AbstractContextManager[None]: ...

    def bounded(self) -> AbstractAsyncContextManager[None]: ...

    async def run(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any: ...

    async def index_queue(self, project: str, queue: str) -> None: ...

    async def publish(self, channel: str, message: bytes) -> int | None: ...
