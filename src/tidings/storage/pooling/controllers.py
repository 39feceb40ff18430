"""The pooled driver's controllers: each operation on a queue goes to the
driver of the queue's pool (driver.py places and routes).

Most operations only pick the pool: ``attach`` gives the pooled driver
proxies (storage/wrapping.py) that forward them to the pool's driver,
placing the queue first for the operations in PLACING. The classes below
hold the operations that do more: listings merged across pools, the
queue's catalogue entry, claims with a dead letter queue in another pool,
and delivery ids that carry their pool.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
from typing import Any, Protocol, Sequence

from tidings.storage.base import (
    ClaimResult,
    DataDriver,
    DeadLetterPolicy,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    NewMessage,
    QueueFilters,
    QueueRecord,
    copy_then_delete,
)
from tidings.storage.pooling.control import (
    CLOSING,
    ControlDriver,
    Placement,
)
from tidings.storage.wrapping import route_controllers

# Delivery ids of the pooled driver: "<pool>:<the pool's own id>".
ID_SEP = ":"
# The client id of the messages a claim moves to a dead letter queue.
DLQ_CLIENT = "00000000-0000-4000-8000-00000000d1a0"
# The operations that place a queue not placed yet rather than send it to
# the first pool: the posts that notify a subscription must reach its pool.
PLACING = frozenset({"messages.post", "subscriptions.create"})


def wrap_delivery(pool: str, delivery: Delivery) -> Delivery:
    delivery.id = f"{pool}{ID_SEP}{delivery.id}"
    return delivery


class PoolRouter(Protocol):
    """The part of PooledDriver its controllers use: which pool's driver
    answers for a queue or a delivery."""

    control: ControlDriver
    # Where the next lease starts, so every pool's deliveries get their turn.
    lease_turn: int

    async def driver_for(self, pool: str) -> DataDriver: ...

    async def all_drivers(self) -> list[tuple[str, DataDriver]]: ...

    async def placement(self, project: str, queue: str) -> Placement | None: ...

    async def lookup(self, project: str, queue: str) -> str | None: ...

    def forget_cached(self, project: str, queue: str) -> None: ...

    async def fallback(self) -> DataDriver: ...

    async def route(self, project: str, queue: str) -> DataDriver: ...

    async def place(self, project: str, queue: str, flavor: str | None = None) -> DataDriver: ...

    async def place_name(self, project: str, queue: str, flavor: str | None = None,
                         *, near: str | None = None) -> str: ...

    async def unwrap(self, delivery_id: str) -> tuple[DataDriver, str]: ...


def attach(pooled: PoolRouter) -> None:
    """Set the pooled driver's controllers (see the module docstring)."""

    async def driver_for(op: str, project: str, queue: str) -> DataDriver:
        if op in PLACING:
            return await pooled.place(project, queue)
        return await pooled.route(project, queue)

    route_controllers(pooled, {
        "queues": PooledQueues(pooled),
        "messages": PooledMessages(pooled),
        "claims": PooledClaims(pooled),
        "subscriptions": PooledSubscriptions(pooled),
        "deliveries": PooledDeliveries(pooled),
    }, driver_for)


class _Part:
    """What a pooled controller holds: the pooled driver, for routing."""

    def __init__(self, pooled: PoolRouter) -> None:
        self.pooled = pooled


class PooledQueues(_Part):
    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        flavor = metadata.get("_flavor") if isinstance(metadata, dict) else None
        driver = await self.pooled.place(project, name, flavor if isinstance(flavor, str) else None)
        return await driver.queues.create(project, name, metadata)

    async def delete(self, project: str, name: str) -> None:
        pool = await self.pooled.lookup(project, name)
        if pool is None:
            await (await self.pooled.fallback()).queues.delete(project, name)
            return
        await (await self.pooled.driver_for(pool)).queues.delete(project, name)
        await self.pooled.control.forget(project, name)
        self.pooled.forget_cached(project, name)

    async def list(self, project: str, *, marker: str | None, limit: int, detailed: bool,
                   filters: QueueFilters | None = None) -> list[QueueRecord]:
        drivers = await self.pooled.all_drivers()
        pages = await asyncio.gather(*(
            d.queues.list(project, marker=marker, limit=limit, detailed=detailed,
                          filters=filters)
            for _, d in drivers))
        merged: dict[str, QueueRecord] = {}
        for record in sorted(itertools.chain.from_iterable(pages), key=lambda r: r.name):
            merged.setdefault(record.name, record)
        return list(merged.values())[:limit]

    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        drivers = await self.pooled.all_drivers()
        return sum(await asyncio.gather(*(d.queues.count(project, filters) for _, d in drivers)))


class PooledMessages(_Part):
    async def move(self, project: str, src: str, dst: str, ids: Sequence[str],
                   claim_id: str, ttl: int | None = None) -> builtins.list[str]:
        """The pool's own (atomic) move when both queues live in one pool;
        across pools, the interface's default post-then-delete."""
        source = await self.pooled.route(project, src)
        target = await self.pooled.place(project, dst)
        if source is target:
            return await source.messages.move(project, src, dst, ids, claim_id, ttl)
        return await copy_then_delete(source.messages, target.messages, project, src, dst, ids,
                                      claim_id, ttl)


class PooledClaims(_Part):
    async def create(self, project: str, queue: str, *, ttl: int, grace: int, limit: int,
                     dead_letter: DeadLetterPolicy | None) -> ClaimResult:
        """The pool's claim, and its ``dead_lettered`` count. A dead letter
        queue in another pool gets messages the pool first moved to a local
        queue of that name: forwarding them is the same move finishing, not
        a second one, so it adds nothing (nor does forwarding what an
        earlier claim left behind)."""
        pooled = self.pooled
        placement = await pooled.placement(project, queue)
        if placement is None:
            driver = await pooled.fallback()
            return await driver.claims.create(project, queue, ttl=ttl, grace=grace,
                                              limit=limit, dead_letter=dead_letter)
        if placement.state == CLOSING:
            # A drain waits for the queue's claims to end: grant none meanwhile.
            return ClaimResult(None)
        pool = placement.pool
        driver = await pooled.driver_for(pool)
        elsewhere: str | None = None
        if dead_letter is not None and dead_letter.queue:
            # The pool moves dead letters to a queue of its own: place the
            # dead letter queue beside this one when it is not placed yet.
            dlq_pool = await pooled.place_name(project, dead_letter.queue, near=pool)
            if dlq_pool != pool:
                elsewhere = dlq_pool
        result = await driver.claims.create(project, queue, ttl=ttl, grace=grace, limit=limit,
                                            dead_letter=dead_letter)
        if elsewhere is not None and dead_letter is not None and dead_letter.queue:
            await self._forward_dead_letters(project, dead_letter.queue, driver,
                                             await pooled.driver_for(elsewhere))
        return result

    @staticmethod
    async def _forward_dead_letters(project: str, dlq: str, source: DataDriver,
                                    target: DataDriver) -> None:
        """The dead letter queue is on another pool: the source pool wrote the
        dead letters to a local queue of that name; move them over (posted
        to the target first, then deleted here: a crash between the two
        leaves a copy behind rather than losing one)."""
        while True:
            page, _ = await source.messages.list(
                project, dlq, marker=None, limit=20, client_id=None, echo=True,
                include_claimed=True, include_delayed=True)
            if not page:
                break
            await target.messages.post(
                project, dlq, [NewMessage(body=m.body, ttl=max(m.ttl - m.age, 1))
                               for m in page], DLQ_CLIENT)
            await source.messages.bulk_delete(project, dlq, [m.id for m in page],
                                              [m.claim_id for m in page if m.claim_id])
        await source.queues.delete(project, dlq)


class PooledSubscriptions(_Part):
    async def purge(self, project: str, queue: str) -> None:
        await (await self.pooled.route(project, queue)).subscriptions.purge(project, queue)


class PooledDeliveries(_Part):
    async def enqueue(self, project: str, queue: str, subscription_id: str,
                      kind: DeliveryKind, payload: dict[str, Any]) -> str:
        pooled = self.pooled
        pool = await pooled.lookup(project, queue)
        if pool is None:
            driver = await pooled.fallback()
            return await driver.deliveries.enqueue(project, queue, subscription_id, kind,
                                                   payload)
        driver = await pooled.driver_for(pool)
        inner = await driver.deliveries.enqueue(project, queue, subscription_id, kind, payload)
        return f"{pool}{ID_SEP}{inner}"

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Each pool in turn until ``limit`` are leased, starting one pool
        further on every call so no pool starves the others."""
        drivers = await self.pooled.all_drivers()
        if not drivers:
            return []
        turn = self.pooled.lease_turn % len(drivers)
        self.pooled.lease_turn += 1
        leased: list[Delivery] = []
        for name, driver in drivers[turn:] + drivers[:turn]:
            want = limit - len(leased)
            if want <= 0:
                break
            batch = await driver.deliveries.lease(limit=want, lease_seconds=lease_seconds)
            leased.extend(wrap_delivery(name, d) for d in batch)
        leased.sort(key=lambda d: d.created)
        return leased

    async def delivered(self, delivery_id: str) -> None:
        driver, inner = await self.pooled.unwrap(delivery_id)
        await driver.deliveries.delivered(inner)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        driver, inner = await self.pooled.unwrap(delivery_id)
        await driver.deliveries.retry(inner, at=at, error=error)

    async def dead(self, delivery_id: str, *, error: str) -> None:
        driver, inner = await self.pooled.unwrap(delivery_id)
        await driver.deliveries.dead(inner, error=error)

    async def list(self, project: str, queue: str, *, status: DeliveryStatus,
                   marker: str | None, limit: int, subscription_id: str | None = None
                   ) -> list[Delivery]:
        pool = await self.pooled.lookup(project, queue)
        if pool is None:
            driver = await self.pooled.fallback()
            return await driver.deliveries.list(project, queue, status=status, marker=marker,
                                                limit=limit, subscription_id=subscription_id)
        driver = await self.pooled.driver_for(pool)
        if marker is not None:
            prefix = f"{pool}{ID_SEP}"
            marker = marker[len(prefix):] if marker.startswith(prefix) else marker
        page = await driver.deliveries.list(project, queue, status=status, marker=marker,
                                            limit=limit, subscription_id=subscription_id)
        return [wrap_delivery(pool, d) for d in page]
