"""What the SQLite controllers share: the helpers every write job uses
and, as a protocol, the part of the driver they call back into.

The controllers (queues.py, messages.py, claims.py, subscriptions.py,
deliveries.py) are built by the driver; typing them against this protocol
instead of ``SqliteDriver`` keeps the driver the only module that imports
them all, so the package has no import circle.
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any, Protocol

import msgspec

from tidings import errors
from tidings.storage.base import Clock, DeliveryKind
from tidings.storage.common.ids import IdCodec
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.writer import Writer

# JSON codecs for the stored metadata, options and bodies.
encode_json = msgspec.json.encode
decode_json = msgspec.json.decode


def new_token() -> int:
    return secrets.randbits(32)


KIND_CODES = {DeliveryKind.MESSAGE: 0, DeliveryKind.CONFIRMATION: 1}
KINDS = {code: kind for kind, code in KIND_CODES.items()}


def inserted_rowid(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT of ``cursor`` wrote (these inserts
    always write one: the writer holds the write lock)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise sqlite3.OperationalError("an INSERT wrote no row")
    return rowid


def find_queue(conn: sqlite3.Connection, project: str, name: str,
               noted: dict[Any, Any] | None = None) -> int | None:
    """The queue's row id, or None when it has no row.

    ``noted``, the writer's notes of the open transaction, keeps the ids
    found for the rest of that transaction: the posts, claims and deletes
    of one group mostly name the same queue, and the lookup is a statement
    of its own (5 µs, as much as a post's INSERT). That is safe because a
    queue's row is deleted only by a heavy job, alone in its transaction,
    and the writer drops its notes with any write it undoes
    (storage/sqlite/writer.py)."""
    ids = _noted_queue_ids(noted)
    if ids is not None and (queue_id := ids.get((project, name))) is not None:
        return queue_id
    row = conn.execute(q.QUEUE_ID, (project, name)).fetchone()
    queue_id = row[0] if row else None
    if ids is not None and queue_id is not None:
        ids[(project, name)] = queue_id
    return queue_id


def ensure_queue(conn: sqlite3.Connection, project: str, name: str, now: float,
                 noted: dict[Any, Any] | None = None) -> int:
    """The queue's row id, its row created first if needed (``noted`` as
    for find_queue)."""
    queue_id = find_queue(conn, project, name, noted)
    if queue_id is None:
        # The writer holds the write lock, so the insert cannot conflict.
        queue_id = inserted_rowid(conn.execute(q.QUEUE_INSERT, (project, name, "{}", now)))
        if (ids := _noted_queue_ids(noted)) is not None:
            ids[(project, name)] = queue_id
    return queue_id


def _noted_queue_ids(noted: dict[Any, Any] | None) -> dict[tuple[str, str], int] | None:
    return None if noted is None else noted.setdefault("queue_ids", {})


def no_subscription(subscription_id: str) -> errors.SubscriptionDoesNotExist:
    return errors.SubscriptionDoesNotExist(f"Subscription {subscription_id} does not exist.")


class SqliteCore(Protocol):
    """The part of SqliteDriver its controllers use."""

    clock: Clock
    writer: Writer
    # The queues the transaction being committed posted to: their watches
    # are woken once the commit is durable.
    posted: set[tuple[str, str]]

    @property
    def ids(self) -> IdCodec: ...

    def read(self, fn: Any, *args: Any) -> Any: ...

    async def read_in_thread(self, fn: Any, *args: Any) -> Any: ...
