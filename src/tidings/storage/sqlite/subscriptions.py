"""SQLite subscriptions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    DeliveryKind,
    NewSubscription,
    Subscription,
)
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.core import (
    KIND_CODES,
    SqliteCore,
    decode_json,
    encode_json,
    inserted_rowid,
    new_token,
    no_subscription,
)


def _subscription(ids: IdCodec, row: tuple[Any, ...], now: float) -> Subscription:
    rowid, token, queue, subscriber, ttl, created, options, confirmed = row
    return Subscription(
        id=ids.public_id(IdKind.SUBSCRIPTION, rowid, token),
        queue=queue,
        subscriber=subscriber,
        ttl=ttl,
        age=int(now - created),
        options=decode_json(options),
        confirmed=bool(confirmed),
    )



class SqliteSubscriptions(base.SubscriptionController):
    """Each change is one write job: a subscription and its confirmation
    request are written together or not at all."""

    d: SqliteCore

    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        now = self.d.clock()
        token = new_token()
        options = encode_json(subscription.options).decode()
        ttl = subscription.ttl
        subscriber = subscription.subscriber

        def job(conn: sqlite3.Connection) -> str | None:
            taken = conn.execute(
                q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
            ).fetchone()
            if taken:
                return None
            rowid = inserted_rowid(conn.execute(
                q.SUBSCRIPTION_INSERT,
                (token, project, queue, subscriber, ttl, now, now + ttl, options,
                 int(subscription.confirmed)),
            ))
            subscription_id = self.d.ids.public_id(IdKind.SUBSCRIPTION, rowid, token)
            if confirmation is not None:
                # One job, so the two inserts are one: the writer undoes all
                # of a failing job's writes, and no subscription is left.
                conn.execute(
                    q.DELIVERY_INSERT,
                    (new_token(), rowid, KIND_CODES[DeliveryKind.CONFIRMATION], None, None,
                     encode_json(confirmation(subscription_id)), now, now),
                )
            return subscription_id

        return await self.d.writer.run(job)

    async def get(self, project: str, queue: str, subscription_id: str) -> Subscription:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = self.d.read(
                lambda c: c.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            )
        if row is None:
            raise no_subscription(subscription_id)
        return _subscription(self.d.ids, row, now)

    async def find(self, project: str, queue: str, subscriber: str) -> Subscription | None:
        now = self.d.clock()
        row = self.d.read(
            lambda c: c.execute(
                q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
            ).fetchone()
        )
        return None if row is None else _subscription(self.d.ids, row, now)

    async def _list(self, project: str, queue: str, marker: str | None, limit: int
                    ) -> list[Subscription]:
        now = self.d.clock()
        params = (project, queue, self.d.ids.marker(IdKind.SUBSCRIPTION, marker), now, limit)
        rows = self.d.read(lambda c: c.execute(q.SUBSCRIPTION_PAGE, params).fetchall())
        return [_subscription(self.d.ids, row, now) for row in rows]

    async def _update(self, project: str, queue: str, subscription_id: str,
                      subscriber: str | None, ttl: int | None,
                      options: dict[str, Any] | None) -> None:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise no_subscription(subscription_id)
        fields: list[str] = []
        args: list[Any] = []
        if subscriber is not None:
            fields.append(q.SUBSCRIPTION_SET_SUBSCRIBER)
            args.append(subscriber)
        if ttl is not None:
            fields.append(q.SUBSCRIPTION_SET_TTL)
            args += [ttl, now, now + ttl]
        if options is not None:
            fields.append(q.SUBSCRIPTION_SET_OPTIONS)
            args.append(encode_json(options).decode())
        sql = q.SUBSCRIPTION_UPDATE.format(fields=", ".join(fields))

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            if row is None:
                raise no_subscription(subscription_id)
            if subscriber is not None and subscriber != row[3]:
                taken = conn.execute(
                    q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
                ).fetchone()
                if taken:
                    raise errors.Conflict(
                        f"Queue {queue} already has a subscription for {subscriber}."
                    )
            if fields:
                conn.execute(sql, (*args, row[0]))

        await self.d.writer.run(job)

    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise no_subscription(subscription_id)

        def job(conn: sqlite3.Connection) -> None:
            params = (int(confirmed), *parsed, project, queue, now)
            if conn.execute(q.SUBSCRIPTION_CONFIRM, params).rowcount == 0:
                raise no_subscription(subscription_id)

        await self.d.writer.run(job)

    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            return

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(q.SUBSCRIPTION_OF_QUEUE, (*parsed, project, queue)).fetchone()
            if row is not None:
                conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTION, (row[0],))
                conn.execute(q.SUBSCRIPTION_DELETE, (row[0],))

        await self.d.writer.run(job)


