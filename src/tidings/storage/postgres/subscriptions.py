"""PostgreSQL subscriptions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    DeliveryKind,
    NewSubscription,
)
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import (
    PostgresCore,
    decode_json,
    encode_json,
    no_subscription,
    parse_seq_id,
    seq_public_id,
)


def _subscription(ids: IdCodec, row: Sequence[Any], now: float) -> base.Subscription:
    seq, token, queue, subscriber, ttl, options, confirmed, started = row[:8]
    return base.Subscription(
        id=seq_public_id(ids, IdKind.SUBSCRIPTION, seq, token),
        queue=queue,
        subscriber=subscriber,
        ttl=ttl,
        age=int(now - started),
        options=decode_json(options),
        confirmed=confirmed,
    )



class PostgresSubscriptions(base.SubscriptionController):
    d: PostgresCore

    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        now = self.d.clock()
        args = (project, queue, subscription.subscriber, int(subscription.ttl),
                encode_json(subscription.options), subscription.confirmed, now)
        if confirmation is None:
            row = await self.d.fetchrow(q.SUBSCRIPTION_CREATE, *args)
            return (None if row is None
                    else seq_public_id(self.d.ids, IdKind.SUBSCRIPTION, row[0], row[1]))

        async def create_and_ask(conn: asyncpg.Connection) -> str | None:
            row = await conn.fetchrow(q.SUBSCRIPTION_CREATE, *args)
            if row is None:
                return None
            subscription_id = seq_public_id(self.d.ids, IdKind.SUBSCRIPTION, row[0], row[1])
            await conn.fetchrow(
                q.DELIVERY_ENQUEUE, row[0], row[1], project, queue, now,
                DeliveryKind.CONFIRMATION.value, encode_json(confirmation(subscription_id)))
            return subscription_id

        return await self.d.run(create_and_ask, transaction=True)

    async def get(self, project: str, queue: str, subscription_id: str) -> base.Subscription:
        parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        now = self.d.clock()
        row = None
        if parsed is not None:
            row = await self.d.fetchrow(q.SUBSCRIPTION_GET, *parsed, project, queue, now)
        if row is None:
            raise no_subscription(subscription_id)
        return _subscription(self.d.ids, row, now)

    async def find(self, project: str, queue: str, subscriber: str
                   ) -> base.Subscription | None:
        now = self.d.clock()
        row = await self.d.fetchrow(q.SUBSCRIPTION_FIND, project, queue, subscriber, now)
        return None if row is None else _subscription(self.d.ids, row, now)

    async def _list(self, project: str, queue: str, marker: str | None, limit: int
                    ) -> list[base.Subscription]:
        now = self.d.clock()
        rows = await self.d.fetch(
            q.SUBSCRIPTION_LIST, project, queue, self.d.ids.marker(IdKind.SUBSCRIPTION, marker),
            now, limit)
        return [_subscription(self.d.ids, row, now) for row in rows]

    async def _update(self, project: str, queue: str, subscription_id: str,
                      subscriber: str | None, ttl: int | None,
                      options: dict[str, Any] | None) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise no_subscription(subscription_id)
        now = self.d.clock()
        args = (*parsed, project, queue, now, subscriber, None if ttl is None else int(ttl),
                None if options is None else encode_json(options))

        async def job(conn: asyncpg.Connection) -> Any:
            try:
                return await conn.fetchval(q.SUBSCRIPTION_UPDATE, *args)
            except asyncpg.UniqueViolationError:
                raise errors.Conflict(
                    f"Queue {queue} already has a subscription for this subscriber.") from None

        if await self.d.run(job) is None:
            raise no_subscription(subscription_id)

    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = await self.d.fetchval(
                q.SUBSCRIPTION_CONFIRM, *parsed, project, queue, self.d.clock(), confirmed)
        if row is None:
            raise no_subscription(subscription_id)

    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            return

        async def job(conn: asyncpg.Connection) -> None:
            seq = await conn.fetchval(q.SUBSCRIPTION_DELETE, *parsed, project, queue)
            if seq is not None:
                await conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTIONS, [seq])

        await self.d.run(job, transaction=True)

