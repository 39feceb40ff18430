"""Subscriptions and the delivery outbox.

Everything of a queue's notifications lives under the queue's hash tag
(keys.py), so one script changes it atomically and a post writes its
MESSAGE deliveries in the very script that stores the messages.

The outbox across queues
------------------------
Workers lease from every queue, but on Redis Cluster a global index of
deliveries cannot be updated in the same script as a queue's keys (another
slot). So each queue keeps its own due set (``:nw``, exact), and one
global sorted set, ``<prefix>outbox``, names the queues that may have
something due, scored by a *hint*: the earliest due time of the queue's
pending deliveries. The hint is written after the queue's script, so it
may lag; the rules keep it never later than the truth:

- whoever makes a delivery due earlier (a post, enqueue, retry) lowers the
  hint afterwards with ``ZADD LT`` (which also adds a missing queue);
- whoever raises or removes it (lease, delivered, dead, subscription
  delete, gc) writes what its script saw and then re-reads the queue's due
  head and lowers the hint again if a concurrent writer got in between
  (``_settle``), so a raise never hides an earlier delivery.

A hint that is too early costs one script call that finds nothing and
corrects it. A process that dies between a post's script and its hint
update leaves deliveries with no hint: gc walks ``<prefix>subscribed``
(written before any subscription, hence before any delivery) and restores
the hints, so such deliveries are late, never lost.

``lease`` reads up to LEASE_QUEUES queues whose hint is due, oldest hint
first, leases up to ``limit`` from each of them concurrently (one script
per queue: atomic, so concurrent workers never share a delivery), keeps
the ``limit`` oldest by due time and gives the rest back at once. The order
is exact among the queues read; beyond LEASE_QUEUES due queues it is
approximate (a later call takes the rest), on a single server as on a
Cluster.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    NewSubscription,
    Subscription,
)
from tidings.storage.redis import scripts
from tidings.storage.redis.keys import Keys, member_of_tag, member_tag
from tidings.storage.redis.messages import HEX, decode_record, sequence_seed

if TYPE_CHECKING:
    from tidings.storage.redis.core import RedisCore

_encode = msgspec.json.encode
_decode = msgspec.json.decode
ID_SALT_LENGTH = 8
# lease() reads at most this many due queues per call.
LEASE_QUEUES = 16
_KINDS = {kind.value: kind for kind in DeliveryKind}
_STATUS = {DeliveryStatus.PENDING: "p", DeliveryStatus.DEAD: "d"}
_STATUS_BACK = {"p": DeliveryStatus.PENDING, "d": DeliveryStatus.DEAD}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _salt() -> str:
    return secrets.token_hex(ID_SALT_LENGTH // 2)


def _sequence_of(identifier: str | None) -> int:
    """The sequence an id (of a subscription or a delivery) starts with; 0
    for anything else, so a marker we never issued pages from the start."""
    if identifier and len(identifier) >= 16 + ID_SALT_LENGTH:
        head = identifier[:16]
        if HEX.issuperset(head):
            return int(head, 16)
    return 0


def to_subscription(queue: str, sid: Any, raw: bytes, now: float) -> Subscription:
    created, _expires, ttl, confirmed, subscriber, options, _seq = decode_record(raw)
    return Subscription(
        id=_text(sid),
        queue=queue,
        subscriber=_text(subscriber),
        ttl=int(ttl),
        age=int(now - created),
        options=_decode(options),
        confirmed=bool(confirmed),
    )


def to_delivery(project: str, queue: str, did: Any, raw: bytes, sub_raw: bytes) -> Delivery:
    sub_id, kind, payload, attempts, created, status, error, _seq, _died = decode_record(raw)
    sub = decode_record(sub_raw)
    return Delivery(
        id=_text(did),
        project=project,
        queue=queue,
        subscription_id=_text(sub_id),
        subscriber=_text(sub[4]),
        options=_decode(sub[5]),
        kind=_KINDS[_text(kind)],
        payload=_decode(payload),
        attempts=int(attempts),
        created=float(created),
        status=_STATUS_BACK[_text(status)],
        last_error=None if error is False or error is None else _text(error),
    )


class RedisSubscriptions(base.SubscriptionController):
    d: RedisCore

    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        keys = self.d.keys
        member = keys.member(project, queue)
        # The global set first: every queue holding a subscription (and so
        # possibly deliveries) is in it, for gc to find (see the module doc).
        async with self.d.bounded():
            await self.d.client.sadd(keys.subscribed, member)
        now = self.d.clock()
        base_key = keys.queue(project, queue)
        salt = _salt()
        args: list[Any] = [repr(now), subscription.ttl, subscription.subscriber,
                           _encode(subscription.options), int(subscription.confirmed),
                           sequence_seed(now), salt]
        if confirmation is not None:
            # The confirmation payload names the id, and the script that
            # stores both must have it: reserve the id's sequence first (a
            # reservation that is never used only leaves a gap).
            seq = await self.d.run(scripts.nseq_reserve, [base_key], [sequence_seed(now)])
            payload = confirmation(f"{int(seq):016x}{salt}")
            args += [int(seq), _encode(payload), _salt(), member_tag(member)]
        sid = await self.d.run(scripts.sub_create, [base_key], args)
        if sid is None:
            return None
        if confirmation is not None:
            await self.d.deliveries.lower(member, now)
        return _text(sid)

    async def get(self, project: str, queue: str, subscription_id: str) -> Subscription:
        now = self.d.clock()
        raw = await self.d.run(
            scripts.sub_get, [self.d.keys.queue(project, queue)], [repr(now), subscription_id]
        )
        if raw is None:
            raise errors.SubscriptionDoesNotExist(
                f"Subscription {subscription_id} does not exist."
            )
        return to_subscription(queue, subscription_id, raw, now)

    async def find(self, project: str, queue: str, subscriber: str) -> Subscription | None:
        now = self.d.clock()
        found = await self.d.run(
            scripts.sub_find, [self.d.keys.queue(project, queue)], [repr(now), subscriber]
        )
        if not found:
            return None
        return to_subscription(queue, found[0], found[1], now)

    async def _list(self, project: str, queue: str, marker: str | None, limit: int
                    ) -> list[Subscription]:
        now = self.d.clock()
        flat = await self.d.run(
            scripts.sub_list,
            [self.d.keys.queue(project, queue)],
            [repr(now), _sequence_of(marker), limit],
        )
        return [to_subscription(queue, flat[i], flat[i + 1], now) for i in range(0, len(flat), 2)]

    async def _update(self, project: str, queue: str, subscription_id: str,
                      subscriber: str | None, ttl: int | None,
                      options: dict[str, Any] | None) -> None:
        result = await self.d.run(
            scripts.sub_update,
            [self.d.keys.queue(project, queue)],
            [repr(self.d.clock()), subscription_id,
             int(subscriber is not None), subscriber or "",
             int(ttl is not None), ttl or 0,
             int(options is not None), _encode(options) if options is not None else ""],
        )
        if result == 1:
            raise errors.SubscriptionDoesNotExist(
                f"Subscription {subscription_id} does not exist."
            )
        if result == 2:
            raise errors.Conflict(
                f"The queue {queue} already has a subscription for {subscriber}."
            )

    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        done = await self.d.run(
            scripts.sub_confirm,
            [self.d.keys.queue(project, queue)],
            [repr(self.d.clock()), subscription_id, int(confirmed)],
        )
        if not done:
            raise errors.SubscriptionDoesNotExist(
                f"Subscription {subscription_id} does not exist."
            )

    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        queue_base = self.d.keys.queue(project, queue)
        removed, head = await self.d.run(scripts.sub_delete, [queue_base], [subscription_id])
        if removed:
            await self.d.deliveries.settle(self.d.keys.member(project, queue), head)


class RedisDeliveries(base.DeliveryController):
    d: RedisCore

    # --- the outbox hint (see the module doc) ------------------------------

    async def lower(self, member: str, due: float) -> None:
        """The queue has a delivery due at ``due``: lower (or add) its hint."""
        async with self.d.bounded():
            await self.d.client.zadd(self.d.keys.outbox, {member: due}, lt=True)

    async def settle(self, member: str, head: Any) -> None:
        """Set the queue's hint to the due head a script saw (None, or
        false from Lua: nothing pending), then re-read the head and lower
        the hint if a concurrent writer added an earlier delivery."""
        keys = self.d.keys
        seen = None if head is None or head is False else float(head)
        async with self.d.bounded():
            if seen is None:
                await self.d.client.zrem(keys.outbox, member)
            else:
                await self.d.client.zadd(keys.outbox, {member: seen})
            now_head = await self.d.client.zrange(
                keys.queue_from_member(member) + ":nw", 0, 0, withscores=True
            )
            if now_head and (seen is None or now_head[0][1] < seen):
                await self.d.client.zadd(keys.outbox, {member: now_head[0][1]}, lt=True)

    def _locate(self, delivery_id: str) -> tuple[str, str] | None:
        """(member, queue key base) of a delivery id; None if it names none."""
        head, dot, tag = delivery_id.partition(".")
        if not dot or len(head) != 16 + ID_SALT_LENGTH or not HEX.issuperset(head):
            return None
        member = member_of_tag(tag)
        if member is None:
            return None
        return member, self.d.keys.queue_from_member(member)

    # --- the interface ----------------------------------------------------

    async def enqueue(self, project: str, queue: str, subscription_id: str,
                      kind: DeliveryKind, payload: dict[str, Any]) -> str:
        keys = self.d.keys
        member = keys.member(project, queue)
        now = self.d.clock()
        did = await self.d.run(
            scripts.delivery_enqueue,
            [keys.queue_from_member(member)],
            [repr(now), subscription_id, kind.value, _encode(payload), sequence_seed(now),
             _salt(), member_tag(member)],
        )
        if did is None:
            raise errors.SubscriptionDoesNotExist(
                f"Subscription {subscription_id} does not exist."
            )
        await self.lower(member, now)
        return _text(did)

    async def _lease(self, limit: int, lease_seconds: float) -> list[Delivery]:
        now = self.d.clock()
        until = now + max(lease_seconds, 0.001)
        async with self.d.bounded():
            due = await self.d.client.zrangebyscore(
                self.d.keys.outbox, "-inf", repr(now), start=0, num=LEASE_QUEUES,
                withscores=True,
            )
        if not due:
            return []
        members = [(_text(m), hint) for m, hint in due]
        replies = await asyncio.gather(*(
            self.d.run(scripts.delivery_lease, [self.d.keys.queue_from_member(member)],
                       [repr(now), repr(until), limit])
            for member, _ in members
        ))
        # (due, queue order, position, member, id, record, subscription record)
        taken: list[tuple[float, int, int, str, Any, bytes, bytes]] = []
        heads: dict[str, Any] = {}
        for order, ((member, _), (flat, head)) in enumerate(zip(members, replies)):
            heads[member] = head
            for i in range(0, len(flat), 4):
                taken.append((float(flat[i + 3]), order, i, member, flat[i], flat[i + 1],
                              flat[i + 2]))
        taken.sort(key=lambda t: (t[0], t[1], t[2]))
        kept, extra = taken[:limit], taken[limit:]
        if extra:
            back: dict[str, list[Any]] = {}
            for due_at, _, _, member, did, _, _ in extra:
                back.setdefault(member, []).extend([did, repr(due_at)])
            released = await asyncio.gather(*(
                self.d.run(scripts.delivery_release, [self.d.keys.queue_from_member(member)],
                           [repr(until), *args])
                for member, args in back.items()
            ))
            heads.update(zip(back, released))
        # Raise (or drop) the hints of the queues read: a script saw the head.
        await asyncio.gather(*(
            self.settle(member, heads[member])
            for member, hint in members
            if heads[member] is None or heads[member] is False or float(heads[member]) != hint
        ))
        out = []
        for _, _, _, member, did, raw, sub_raw in kept:
            project, queue = Keys.names_of_member(member)
            out.append(to_delivery(project, queue, did, raw, sub_raw))
        return out

    async def delivered(self, delivery_id: str) -> None:
        where = self._locate(delivery_id)
        if where is None:
            return
        member, queue_base = where
        found, head = await self.d.run(scripts.delivery_done, [queue_base], [delivery_id])
        if found and (head is None or head is False):
            await self.settle(member, head)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        where = self._locate(delivery_id)
        if where is None:
            return
        member, queue_base = where
        if await self.d.run(scripts.delivery_retry, [queue_base],
                            [repr(self.d.clock()), delivery_id, repr(float(at)), error]):
            await self.lower(member, float(at))

    async def dead(self, delivery_id: str, *, error: str) -> None:
        where = self._locate(delivery_id)
        if where is None:
            return
        member, queue_base = where
        found, head = await self.d.run(scripts.delivery_dead, [queue_base],
                                       [repr(self.d.clock()), delivery_id, error])
        if found and (head is None or head is False):
            await self.settle(member, head)

    async def _list(self, project: str, queue: str, status: DeliveryStatus, marker: str | None,
                    limit: int, subscription_id: str | None) -> list[Delivery]:
        flat = await self.d.run(
            scripts.delivery_list,
            [self.d.keys.queue(project, queue)],
            [_STATUS[status], _sequence_of(marker), limit, subscription_id or ""],
        )
        return [to_delivery(project, queue, flat[i], flat[i + 1], flat[i + 2])
                for i in range(0, len(flat), 3)]

    # --- gc ---------------------------------------------------------------

    async def gc(self, now: float, dead_before: float, batch: int) -> base.GcResult:
        """Expired subscriptions with their deliveries, and dead deliveries
        older than the retention, of every queue with subscriptions; also
        restores outbox hints a crash may have cut off."""
        keys = self.d.keys
        members: list[str] = []
        with self.d.guard():  # a scan of many calls: each read is bounded
            async for raw in self.d.client.sscan_iter(keys.subscribed, count=200):
                members.append(_text(raw))
        total = base.GcResult()
        for start in range(0, len(members), 200):
            counts = await asyncio.gather(*(
                self._gc_queue(member, now, dead_before, batch)
                for member in members[start:start + 200]
            ))
            total += sum(counts, base.GcResult())
        return total

    async def _gc_queue(self, member: str, now: float, dead_before: float, batch: int
                        ) -> base.GcResult:
        keys = self.d.keys
        queue_base = keys.queue_from_member(member)
        removed = base.GcResult()
        while True:
            subscriptions, deliveries, more, head, empty = await self.d.run(
                scripts.notify_gc, [queue_base], [repr(now), repr(dead_before), batch]
            )
            removed += base.GcResult(subscriptions=int(subscriptions), deliveries=int(deliveries))
            if not more:
                break
        if head is None or head is False:
            async with self.d.bounded():
                if await self.d.client.zscore(keys.outbox, member) is not None:
                    await self.settle(member, head)
        else:
            await self.lower(member, float(head))
        if empty:
            # Nothing left: leave the set, then look again, as a subscription
            # made meanwhile added itself to the set before its script.
            async with self.d.bounded():
                await self.d.client.srem(keys.subscribed, member)
                if await self.d.client.exists(queue_base + ":ns", queue_base + ":nd"):
                    await self.d.client.sadd(keys.subscribed, member)
        return removed
