"""What the PostgreSQL controllers share: the helpers more than one of
them uses and, as a protocol, the part of the driver they call back into.

The controllers (queues.py, messages.py, claims.py, subscriptions.py,
deliveries.py) are built by the driver; typing them against this protocol
instead of ``PostgresDriver`` keeps the driver the only module that imports
them all, so the package has no import circle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg
import msgspec

from tidings import errors
from tidings.storage.base import Clock
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.postgres import queries as q

T = TypeVar("T")
# JSON codecs for the stored metadata, options and bodies.
encode_json = msgspec.json.encode
decode_json = msgspec.json.decode
# How many times a transaction that met a retryable conflict runs.
RETRIES = 3


def seq_public_id(ids: IdCodec, kind: IdKind, seq: int, token: str) -> str:
    """A subscription's or delivery's id from its row's seq and token (8 hex
    digits in the row, a number in the id)."""
    return ids.public_id(kind, seq, int(token, 16))


def parse_seq_id(ids: IdCodec, kind: IdKind, text: str) -> tuple[int, str] | None:
    """(seq, token) as the row holds them, of an id seq_public_id() wrote."""
    parsed = ids.parse_public_id(kind, text)
    return None if parsed is None else (parsed[0], f"{parsed[1]:08x}")


def rowcount(status: str) -> int:
    """The row count of a command tag such as "DELETE 5" or "INSERT 0 5"."""
    return int(status.rsplit(" ", 1)[-1])


async def lock_queue(conn: asyncpg.Connection, project: str, name: str, now: float) -> int:
    """The queue's id with its row locked (see queries.py), creating it if
    needed. Inside a transaction: the lock lasts until it ends."""
    for _ in range(10):
        queue_id = await conn.fetchval(q.QUEUE_LOCK, project, name)
        if queue_id is not None:
            return queue_id
        # Our own new row is locked until commit; a conflict means another
        # transaction created it, and the next QUEUE_LOCK sees (and waits for) it.
        queue_id = await conn.fetchval(q.QUEUE_INSERT, project, name, b"{}", "{}", now)
        if queue_id is not None:
            return queue_id
    raise errors.ServiceUnavailable(f"Queue {name} was deleted and created repeatedly; try again.")


def no_subscription(subscription_id: str) -> errors.SubscriptionDoesNotExist:
    return errors.SubscriptionDoesNotExist(f"Subscription {subscription_id} does not exist.")


class PostgresCore(Protocol):
    """The part of PostgresDriver its controllers use."""

    clock: Clock

    @property
    def ids(self) -> IdCodec: ...

    async def run(self, job: Callable[[asyncpg.Connection], Awaitable[T]], *,
                  transaction: bool = False) -> T: ...

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> str: ...

    def notify_args(self, project: str, queue: str) -> tuple[str | None, str | None]: ...

    async def publish(self, channel: str, message: bytes) -> int | None: ...

    def wake_watches(self, project: str | None, queue: str | None) -> None: ...
