"""PostgreSQL deliveries: the subscription outbox."""

from __future__ import annotations

from typing import Any

import asyncpg

from tidings.storage import base
from tidings.storage.base import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
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


def _delivery(ids: IdCodec, row: asyncpg.Record) -> Delivery:
    kind = DeliveryKind(row["kind"])
    if kind is DeliveryKind.MESSAGE:
        payload = {"id": ids.message_id(row["message_id"]), "body": decode_json(row["body"]),
                   "ttl": row["ttl"]}
    else:
        payload = decode_json(row["body"])
    return Delivery(
        id=seq_public_id(ids, IdKind.DELIVERY, row["seq"], row["token"]),
        project=row["project"],
        queue=row["queue"],
        subscription_id=seq_public_id(ids, IdKind.SUBSCRIPTION, row["subscription_seq"],
                                    row["subscription_token"]),
        subscriber=row["subscriber"],
        options=decode_json(row["options"]),
        kind=kind,
        payload=payload,
        attempts=row["attempts"],
        created=row["created"],
        status=DeliveryStatus(row["status"]),
        last_error=row["last_error"],
    )


def _error_text(error: str) -> str:
    # PostgreSQL's text cannot hold NUL; an error message may.
    return error.replace("\x00", "\ufffd")



class PostgresDeliveries(base.DeliveryController):
    d: PostgresCore

    async def enqueue(self, project: str, queue: str, subscription_id: str,
                      kind: DeliveryKind, payload: dict[str, Any]) -> str:
        parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = await self.d.fetchrow(
                q.DELIVERY_ENQUEUE, *parsed, project, queue, self.d.clock(), kind.value,
                encode_json(payload))
        if row is None:
            raise no_subscription(subscription_id)
        return seq_public_id(self.d.ids, IdKind.DELIVERY, row[0], row[1])

    async def _lease(self, limit: int, lease_seconds: float) -> list[Delivery]:
        now = self.d.clock()
        rows = await self.d.fetch(q.DELIVERY_LEASE, now, limit, now + lease_seconds)
        rows.sort(key=lambda row: (row["next_attempt"], row["seq"]))
        return [_delivery(self.d.ids, row) for row in rows]

    async def delivered(self, delivery_id: str) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_DELIVERED, *parsed)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_RETRY, *parsed, at, _error_text(error))

    async def dead(self, delivery_id: str, *, error: str) -> None:
        parsed = parse_seq_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_DEAD, *parsed, self.d.clock(), _error_text(error))

    async def _list(self, project: str, queue: str, status: DeliveryStatus, marker: str | None,
                    limit: int, subscription_id: str | None) -> list[Delivery]:
        after = self.d.ids.marker(IdKind.DELIVERY, marker)
        if subscription_id is None:
            rows = await self.d.fetch(q.DELIVERY_LIST, project, queue, status.value, after, limit)
        else:
            parsed = parse_seq_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
            if parsed is None:
                return []
            rows = await self.d.fetch(q.DELIVERY_LIST_OF_SUBSCRIPTION, project, queue,
                                      status.value, after, limit, *parsed)
        return [_delivery(self.d.ids, row) for row in rows]


