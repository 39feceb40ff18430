"""SQLite deliveries: the subscription outbox."""

from __future__ import annotations

import sqlite3
from typing import Any

from tidings.storage import base
from tidings.storage.base import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
)
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.core import (
    KIND_CODES,
    KINDS,
    SqliteCore,
    decode_json,
    encode_json,
    inserted_rowid,
    new_token,
    no_subscription,
)

_STATUS_CODES = {DeliveryStatus.PENDING: 0, DeliveryStatus.DEAD: 1}
_STATUSES = {code: status for status, code in _STATUS_CODES.items()}


def _delivery(ids: IdCodec, row: tuple[Any, ...]) -> Delivery:
    (rowid, token, kind, message, ttl, payload, attempts, created, status, last_error,
     sub_rowid, sub_token, project, queue, subscriber, options) = row[:16]
    if message is not None:
        # A message delivery stores the body as posted; the rest is rebuilt.
        content = {"id": ids.message_id(message), "body": decode_json(payload), "ttl": ttl}
    else:
        content = decode_json(payload)
    return Delivery(
        id=ids.public_id(IdKind.DELIVERY, rowid, token),
        project=project,
        queue=queue,
        subscription_id=ids.public_id(IdKind.SUBSCRIPTION, sub_rowid, sub_token),
        subscriber=subscriber,
        options=decode_json(options),
        kind=KINDS[kind],
        payload=content,
        attempts=attempts,
        created=created,
        status=_STATUSES[status],
        last_error=last_error,
    )



class SqliteDeliveries(base.DeliveryController):
    d: SqliteCore

    async def enqueue(self, project: str, queue: str, subscription_id: str,
                      kind: DeliveryKind, payload: dict[str, Any]) -> str:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise no_subscription(subscription_id)
        token = new_token()
        content = encode_json(payload)

        def job(conn: sqlite3.Connection) -> str:
            row = conn.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            if row is None:
                raise no_subscription(subscription_id)
            rowid = inserted_rowid(conn.execute(
                q.DELIVERY_INSERT,
                (token, row[0], KIND_CODES[kind], None, None, content, now, now),
            ))
            return self.d.ids.public_id(IdKind.DELIVERY, rowid, token)

        return await self.d.writer.run(job)

    async def _lease(self, limit: int, lease_seconds: float) -> list[Delivery]:
        now = self.d.clock()
        until = now + lease_seconds

        def job(conn: sqlite3.Connection) -> list[Delivery]:
            leased: list[Delivery] = []
            while len(leased) < limit:
                want = limit - len(leased)
                rows = conn.execute(q.DELIVERIES_DUE, (now, want)).fetchall()
                for row in rows:
                    sub_expires = row[16]
                    if sub_expires is None or sub_expires <= now:
                        # Its subscription was deleted or expired: it is owed
                        # to nobody. (Dead ones stay until gc.)
                        conn.execute(q.DELIVERY_DELETE_BY_ROWID, (row[0],))
                        continue
                    conn.execute(q.DELIVERY_LEASE, (until, row[0]))
                    leased.append(_delivery(self.d.ids, row))
                if len(rows) < want:
                    break
            return leased

        return await self.d.writer.run(job)

    async def _update(self, delivery_id: str, sql: str, *args: Any) -> None:
        parsed = self.d.ids.parse_public_id(IdKind.DELIVERY, delivery_id)
        if parsed is None:
            return  # a delivery we never issued: nothing to do

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(sql, (*args, *parsed))

        await self.d.writer.run(job)

    async def delivered(self, delivery_id: str) -> None:
        await self._update(delivery_id, q.DELIVERY_DELETE)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        await self._update(delivery_id, q.DELIVERY_RETRY, at, error)

    async def dead(self, delivery_id: str, *, error: str) -> None:
        await self._update(delivery_id, q.DELIVERY_DEAD, self.d.clock(), error)

    async def _list(self, project: str, queue: str, status: DeliveryStatus, marker: str | None,
                    limit: int, subscription_id: str | None) -> list[Delivery]:
        now = self.d.clock()
        params: tuple[Any, ...] = (project, queue, now, _STATUS_CODES[status],
                                   self.d.ids.marker(IdKind.DELIVERY, marker))
        filters = ""
        if subscription_id is not None:
            parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
            if parsed is None:
                return []
            filters = q.DELIVERY_PAGE_OF_SUBSCRIPTION
            params += parsed
        sql = q.DELIVERY_PAGE.format(filters=filters)
        params += (limit,)

        def read(conn: sqlite3.Connection) -> list[Delivery]:
            return [_delivery(self.d.ids, row) for row in conn.execute(sql, params).fetchall()]

        if subscription_id is not None:
            return self.d.read(read)  # one subscription's, by index
        # A queue's: gathered from each subscription and sorted; off the loop.
        return await self.d.read_in_thread(read)

