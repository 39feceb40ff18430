"""Draining a pool: every queue moves to the other pools while servers run.

The catalogue entry of a queue (``Placement``) carries a state besides its
pool, and every server process follows it (see ``PooledDriver.placement``):

- STABLE: served by its pool; the only state a process caches, for at
  most ``cache_seconds`` (``T``), measured from before the read.
- CLOSING toward a target: served by its pool, but claims find nothing to
  claim, so the claims that exist run out. Never cached.
- MOVING toward a target: frozen. Every request on the queue waits (reads
  the entry again every 50 ms, up to ``move_wait``, then 503) until the
  entry is STABLE again, and then goes to the pool it names.

Assumption (``G``, ``drain_grace``): an operation on a pool ends within
``G`` seconds of the catalogue read that routed it. Backend timeouts
make this true when ``G`` is above them.

The drain of pool P, one batch of queues at a time:

1. Mark P draining. ``place`` checks the mark and inserts in one atomic
   step, so from now on no new queue lands on P.
2. For each queue on P: pick a target by weight among the other pools of
   the queue's flavor (``_flavor``), as placement does, and compare-and-set
   STABLE -> CLOSING. A process whose cached STABLE entry was read before
   the mark stops using it within ``T``; its last claim ends within ``G``.
3. Wait ``T + G``: from now on no claim is created on the queue.
4. Wait until P reports no active claim on the queue. Claims end by
   deletes of their messages, releases or expiry; after
   ``drain_claim_wait`` the queue goes back to STABLE and stays on P (the
   drain reports it and exits 1: run it again). Claimed messages are never
   copied, so a consumer's message and claim ids stay valid until it is
   done with them.
5. Compare-and-set CLOSING -> MOVING, then wait ``G``: every request routed
   by a CLOSING read has ended; every later request waits.
6. Copy the frozen queue to the target: first whatever an earlier,
   interrupted attempt left there is deleted, then the metadata, the
   messages (FIFO order, remaining TTL), the subscriptions (remaining TTL,
   confirmation state) and the pending deliveries (re-pointed at the new
   subscription ids). Messages are posted before the subscriptions exist,
   so the copy triggers no notification.
7. Compare-and-set MOVING -> STABLE on the target (the flip), recording P
   as the entry's ``source``. Waiting requests now go to the target.
8. Delete the queue's data on P, then clear ``source``.

Why nothing is lost or duplicated: from step 5 on, no process touches the
queue on P (the last request routed by an older read ended within ``G``),
so the copy reads a queue nobody changes, and nobody reads or writes the
target until the flip. The copy is erased and redone if the drain stops
before the flip, and a flip that loses its compare-and-set (the queue was
deleted meanwhile) drops the copy. After the flip, rerunning the drain
finishes step 8 for entries whose ``source`` is P; ``queues_on`` counts
those, so P cannot be removed before its copies are gone.

What a move does not keep: message and subscription ids are the target
pool's own (there are no claims to carry, see step 4; a client holding an
old message id gets "not found", as for a deleted message), the poster's
Client-ID (moved messages are echoed to everyone), remaining delays (a
delayed message is available once moved), claim counts toward
``_max_claim_count``, and dead deliveries. A delivery a notifier had
leased from P when it was copied may be sent twice (notifications are
at-least-once anyway), and a long poll waiting on P during the flip ends
at its timeout instead of at the next post.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tidings import errors
from tidings.storage.base import DataDriver, DeliveryStatus, NewMessage, NewSubscription
from tidings.storage.pooling.control import CLOSING, MOVING, STABLE, Placement
from tidings.storage.pooling.driver import PooledDriver

# Moved messages are posted under this client id.
DRAIN_CLIENT = "00000000-0000-4000-8000-0000000d7a1e"
PAGE = 100
CLAIM_POLL_SECONDS = 0.1


class DrainError(Exception):
    pass


@dataclass(slots=True)
class DrainReport:
    # (project, queue, target pool)
    moved: list[tuple[str, str, str]] = field(default_factory=list)
    # (project, queue, why it stayed)
    left: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Move:
    project: str
    queue: str
    target: str


class Drain:
    """Moves the queues of one pool to the others (see the module docstring)."""

    def __init__(self, pooled: PooledDriver, *, grace: float, claim_wait: float,
                 batch: int = 20, say: Callable[[str], None] = lambda line: None) -> None:
        self.pooled = pooled
        self.control = pooled.control
        self.grace = grace
        self.claim_wait = claim_wait
        self.batch = max(batch, 1)
        self.say = say

    async def run(self, pool: str) -> DrainReport:
        if await self.control.pool_get(pool) is None:
            raise DrainError(f"pool {pool} does not exist")
        await self.control.pool_set_draining(pool, True)
        self.pooled.invalidate()
        report = DrainReport()
        given_up: set[tuple[str, str]] = set()
        while True:
            entries = [e for e in await self.control.queues_on(pool) if e not in given_up]
            if not entries:
                return report
            for start in range(0, len(entries), self.batch):
                before = len(report.left)
                await self._batch(pool, entries[start:start + self.batch], report)
                given_up.update((p, q) for p, q, _ in report.left[before:])

    # --- one batch ------------------------------------------------------------
    async def _batch(self, pool: str, entries: list[tuple[str, str]],
                     report: DrainReport) -> None:
        moves: list[_Move] = []
        for project, queue in entries:
            placement = await self.control.lookup(project, queue)
            if placement is None:
                continue  # deleted meanwhile
            if placement.pool != pool:
                if placement.source == pool:
                    await self._drop_copy(pool, project, queue)
                continue
            move = await self._close(pool, project, queue, placement, report)
            if move is not None:
                moves.append(move)
        if not moves:
            return
        # Step 3: every process has stopped using a STABLE read of these
        # entries, and the claims it was creating have ended.
        await asyncio.sleep(self.pooled.cache_seconds + self.grace)
        moves = await self._wait_for_claims(pool, moves, report)
        frozen: list[_Move] = []
        for move in moves:
            if await self.control.set_state(move.project, move.queue, pool=pool,
                                            expect=CLOSING, state=MOVING, target=move.target):
                frozen.append(move)
        if not frozen:
            return
        # Step 5: requests routed by a CLOSING read have ended.
        await asyncio.sleep(self.grace)
        source = await self.pooled.driver_for(pool)
        for move in frozen:
            await self._move(pool, source, move, report)

    async def _close(self, pool: str, project: str, queue: str, placement: Placement,
                     report: DrainReport) -> _Move | None:
        """Step 2 (or the resumption of an interrupted drain): the queue
        CLOSING toward a target that takes queues."""
        try:
            target = await self._target(pool, project, queue, placement)
        except errors.TidingsError as exc:
            report.left.append((project, queue, str(exc)))
            return None
        if placement.state == MOVING:
            # An earlier drain stopped during the copy: start it over.
            if not await self.control.set_state(project, queue, pool=pool, expect=MOVING,
                                                state=CLOSING, target=target):
                return None
        elif not await self.control.set_state(project, queue, pool=pool,
                                              expect=placement.state, state=CLOSING,
                                              target=target):
            return None  # changed meanwhile: the next round sees it again
        return _Move(project, queue, target)

    async def _target(self, pool: str, project: str, queue: str, placement: Placement
                      ) -> str:
        pools = {p.name: p for p in await self.pooled.pools(fresh=True)}
        current = pools.get(placement.target or "")
        if current is not None and not current.draining and current.name != pool:
            return current.name
        flavor: str | None = None
        try:
            metadata = await (await self.pooled.driver_for(pool)).queues.get_metadata(
                project, queue)
            value = metadata.get("_flavor")
            flavor = value if isinstance(value, str) else None
        except errors.QueueDoesNotExist:
            pass
        return await self.pooled.choose_pool(flavor, exclude=frozenset({pool}))

    async def _wait_for_claims(self, pool: str, moves: list[_Move], report: DrainReport
                               ) -> list[_Move]:
        """Step 4: the moves whose queue has no active claim; the others go
        back to STABLE once ``claim_wait`` has passed."""
        source = await self.pooled.driver_for(pool)
        deadline = time.monotonic() + self.claim_wait
        waiting = list(moves)
        ready: list[_Move] = []
        while waiting:
            still: list[_Move] = []
            for move in waiting:
                stats = await source.queues.stats(move.project, move.queue)
                (still if stats.claimed else ready).append(move)
            waiting = still
            if not waiting:
                break
            if time.monotonic() >= deadline:
                for move in waiting:
                    await self.control.set_state(move.project, move.queue, pool=pool,
                                                 expect=CLOSING, state=STABLE, target=None)
                    report.left.append((move.project, move.queue,
                                        f"claims still active after {self.claim_wait:g}s"))
                break
            await asyncio.sleep(CLAIM_POLL_SECONDS)
        return ready

    async def _move(self, pool: str, source: DataDriver, move: _Move,
                    report: DrainReport) -> None:
        """Steps 6 to 8 for one frozen queue."""
        target = await self.pooled.driver_for(move.target)
        await copy_queue(source, target, move.project, move.queue)
        if not await self.control.finish_move(move.project, move.queue, source=pool,
                                              target=move.target):
            # Deleted while frozen is impossible (requests wait), but an
            # operator may have forgotten the entry: drop the copy.
            await target.queues.delete(move.project, move.queue)
            return
        await self._drop_copy(pool, move.project, move.queue)
        report.moved.append((move.project, move.queue, move.target))
        self.say(f"moved {move.project}/{move.queue} to {move.target}")

    async def _drop_copy(self, pool: str, project: str, queue: str) -> None:
        """Step 8: the queue's data left on ``pool`` after its flip."""
        await (await self.pooled.driver_for(pool)).queues.delete(project, queue)
        await self.control.clear_source(project, queue, pool)


async def copy_queue(source: DataDriver, target: DataDriver, project: str, queue: str
                     ) -> None:
    """Step 6: a frozen queue's metadata, messages, subscriptions and pending
    deliveries onto ``target``, replacing whatever ``target`` held of it."""
    await target.queues.delete(project, queue)
    try:
        metadata = await source.queues.get_metadata(project, queue)
    except errors.QueueDoesNotExist:
        metadata = None
    if metadata is not None:
        await target.queues.create(project, queue, metadata)
    marker: str | None = None
    while True:
        page, marker = await source.messages.list(
            project, queue, marker=marker, limit=PAGE, client_id=None, echo=True,
            include_claimed=True, include_delayed=True)
        if not page:
            break
        await target.messages.post(
            project, queue, [NewMessage(body=m.body, ttl=max(m.ttl - m.age, 1)) for m in page],
            DRAIN_CLIENT)
        if marker is None:
            break
    renamed: dict[str, str] = {}
    sub_marker: str | None = None
    while subscriptions := await source.subscriptions.list(project, queue, marker=sub_marker,
                                                           limit=PAGE):
        for sub in subscriptions:
            new_id = await target.subscriptions.create(project, queue, NewSubscription(
                subscriber=sub.subscriber, ttl=max(sub.ttl - sub.age, 1),
                options=sub.options, confirmed=sub.confirmed))
            if new_id is not None:
                renamed[sub.id] = new_id
        sub_marker = subscriptions[-1].id
    delivery_marker: str | None = None
    while deliveries := await source.deliveries.list(
            project, queue, status=DeliveryStatus.PENDING, marker=delivery_marker,
            limit=PAGE):
        for delivery in deliveries:
            new_sub = renamed.get(delivery.subscription_id)
            if new_sub is not None:
                await target.deliveries.enqueue(project, queue, new_sub, delivery.kind,
                                                delivery.payload)
        delivery_marker = deliveries[-1].id
