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


def find_queue(conn: sqlite3.Connection, project: str, name: str) -> int | None:
    row = conn.execute(q.QUEUE_ID, (project, name)).fetchone()
    return row[0] if row else None


def ensure_queue(conn: sqlite3.Connection, project: str, name: str, now: float) -> int:
    queue_id = find_queue(conn, project, name)
    if queue_id is None:
        # The writer holds the write lock, so the insert cannot conflict.
        queue_id = inserted_rowid(conn.execute(q.QUEUE_INSERT, (project, name, "{}", now)))
    return queue_id


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
