"""The pooled data driver: Zaqar's pooling, in front of many backends.

Every queue lives on one pool (a whole data driver of its own: SQLite,
Redis or PostgreSQL), recorded in the catalogue of the control store. An
operation on a queue goes to the queue's pool; a queue that is not placed
yet is placed when something creates it (an explicit create, a post, a
subscription, a watch), on a pool chosen at random by weight, among the
pools of the flavor named by its ``_flavor`` metadata when it has one.
Reads of a queue that is not placed go to the first pool, which answers
"does not exist" like any driver.

Listings merge the pools' listings in name order; delivery ids carry their
pool (``pool:id``) so the notification worker's calls route without a
queue. Stable placements and the pool list are cached in the process for
``cache_seconds`` (``[pooling] cache_seconds``): a cache hit costs no call
to the control store, and no cached answer is older than that, which is
what lets a drain move a queue while servers run (see drain.py). A queue
in the middle of a move is never cached: while it is MOVING every request
on it waits (up to ``move_wait`` seconds, then 503) and while it is
CLOSING claims find nothing to claim.

A pool's ``options`` are its driver's URL options (``sync`` for SQLite,
``prefix`` or ``socket_timeout`` for Redis, ``max_size`` or
``command_timeout`` for PostgreSQL, ...): string, number and boolean
values are added to the pool's URI, replacing a URI option of the same
name; other values are kept but not passed on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tidings import errors
from tidings.config import DEAD_RETENTION
from tidings.storage import base
from tidings.storage.base import (
    Capability,
    Clock,
    DataDriver,
    PostWatch,
    system_clock,
)
from tidings.storage.pooling.control import (
    MOVING,
    ControlDriver,
    Placement,
    PoolRecord,
)
from tidings.storage.pooling.controllers import ID_SEP, attach
from tidings.storage.registry import driver_from_url

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
MOVE_WAIT_SECONDS = 30.0
# How often a request waiting on a moving queue reads its placement again.
MOVE_POLL_SECONDS = 0.05
# How many times a placement retries when its chosen pool turned draining.
PLACE_ATTEMPTS = 5
CATALOGUE_CACHE_SIZE = 200_000


class NoPools(errors.ServiceUnavailable):
    pass


class QueueMoving(errors.ServiceUnavailable):
    pass


def pool_url(pool: PoolRecord) -> str:
    """The URL the pool's driver is built from: its URI with its options."""
    passed = {key: ("true" if value else "false") if isinstance(value, bool) else str(value)
              for key, value in pool.options.items()
              if isinstance(value, (str, int, float, bool))}
    if not passed:
        return pool.uri
    parts = urlsplit(pool.uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in passed]
    return urlunsplit(parts._replace(query=urlencode(query + list(passed.items()))))


class PooledDriver(DataDriver):
    name = "pooled"

    def __init__(self, control: ControlDriver, *, sync: str = "full",
                 dead_retention: float = DEAD_RETENTION, clock: Clock = system_clock,
                 rng: random.Random | None = None, cache_seconds: float = CACHE_SECONDS,
                 move_wait: float = MOVE_WAIT_SECONDS, monotonic: Clock = time.monotonic
                 ) -> None:
        self.control = control
        self.sync = sync
        self.dead_retention = dead_retention
        self.clock = clock
        self.rng = rng or random.Random()
        self.cache_seconds = cache_seconds
        self.move_wait = move_wait
        # Ages of cached answers (injectable so tests can age them).
        self.monotonic = monotonic
        self._drivers: dict[str, DataDriver] = {}
        self._uris: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # (project, queue) -> (stable placement, monotonic time of the read)
        self._catalogue: dict[tuple[str, str], tuple[Placement, float]] = {}
        self._pools: list[PoolRecord] | None = None
        self._pools_at = 0.0
        self.lease_turn = 0
        attach(self)

    # --- life cycle -------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]  # computed from the pools, not a class attribute
        opened = [d.capabilities for d in self._drivers.values()]
        return frozenset.intersection(*opened) if opened else frozenset()

    async def open(self) -> None:
        await self.control.open()

    # The pooled driver has no schema of its own: the control store makes
    # its tables when it opens, and each pool's driver upgrades its schema
    # when driver_for() opens it (with migrate_on_open, the default).
    async def migrate(self) -> int:
        return 0

    async def schema_status(self) -> base.SchemaStatus:
        return base.SchemaStatus(None, None)

    async def close(self) -> None:
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            try:
                await driver.close()
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing a pool failed")
        await self.control.close()

    async def is_alive(self) -> bool:
        drivers = await self.all_drivers()
        results = await asyncio.gather(*(d.is_alive() for _, d in drivers),
                                       return_exceptions=True)
        return all(r is True for r in results)

    def problem(self) -> str | None:
        """The first problem an opened pool knows of, named by its pool."""
        for name, driver in self._drivers.items():
            problem = driver.problem()
            if problem is not None:
                return f"Pool {name}: {problem}"
        return None

    async def health(self) -> dict[str, Any]:
        drivers = await self.all_drivers()
        details = await asyncio.gather(*(d.health() for _, d in drivers),
                                       return_exceptions=True)
        pools: dict[str, Any] = {}
        reachable = True
        for (name, driver), detail in zip(drivers, details):
            if isinstance(detail, BaseException):
                pools[name] = {"driver": driver.name, "storage_reachable": False,
                               "error": str(detail)}
                reachable = False
            else:
                pools[name] = {"driver": driver.name, **detail}
                reachable = reachable and detail.get("storage_reachable", True)
        return {"storage_reachable": reachable, "pools": pools}

    async def gc(self) -> base.GcResult:
        drivers = await self.all_drivers()
        return sum(await asyncio.gather(*(d.gc() for _, d in drivers)), base.GcResult())

    def watch(self, project: str, queue: str) -> AbstractAsyncContextManager[PostWatch]:
        return self._watch(project, queue)

    @asynccontextmanager
    async def _watch(self, project: str, queue: str) -> AsyncIterator[PostWatch]:
        # Placed now, so the post that wakes the watch lands on this pool.
        driver = await self.place(project, queue)
        async with driver.watch(project, queue) as watch:
            yield watch

    # The bus and the stored secrets ride on the first pool, which every
    # process of the deployment picks alike (the pools ordered by name).
    async def stored_secret(self, name: str) -> bytes:
        return await (await self.fallback()).stored_secret(name)

    async def publish(self, channel: str, message: bytes) -> int | None:
        return await (await self.fallback()).publish(channel, message)

    def listen(self, channel: str, receive: base.Receive) -> AbstractAsyncContextManager[None]:
        return self._listen(channel, receive)

    @asynccontextmanager
    async def _listen(self, channel: str, receive: base.Receive) -> AsyncIterator[None]:
        async with (await self.fallback()).listen(channel, receive):
            yield

    # --- pools --------------------------------------------------------------------
    async def pools(self, *, fresh: bool = False) -> list[PoolRecord]:
        now = self.monotonic()
        if fresh or self._pools is None or now - self._pools_at >= self.cache_seconds:
            self._pools = await self.control.pool_list()
            self._pools_at = now
            await self._close_changed()
        return self._pools

    def invalidate(self) -> None:
        """Forget the cached pools (after an admin change)."""
        self._pools = None

    async def _close_changed(self) -> None:
        """Close the drivers of pools that went or whose URI or options changed."""
        current = {p.name: pool_url(p) for p in self._pools or []}
        for name in list(self._drivers):
            if current.get(name) != self._uris.get(name):
                driver = self._drivers.pop(name)
                self._uris.pop(name, None)
                try:
                    await driver.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing pool %s failed", name)

    async def driver_for(self, pool: str) -> DataDriver:
        driver = self._drivers.get(pool)
        if driver is not None:
            return driver
        lock = self._locks.setdefault(pool, asyncio.Lock())
        async with lock:
            driver = self._drivers.get(pool)
            if driver is not None:
                return driver
            record = await self.control.pool_get(pool)
            if record is None:
                raise errors.ServiceUnavailable(f"Pool {pool} is not registered.")
            url = pool_url(record)
            driver = driver_from_url(url, sync=self.sync, dead_retention=self.dead_retention,
                                     clock=self.clock)
            await driver.open()
            self._drivers[pool] = driver
            self._uris[pool] = url
            return driver

    async def all_drivers(self) -> list[tuple[str, DataDriver]]:
        pools = await self.pools()
        drivers = await asyncio.gather(*(self.driver_for(p.name) for p in pools))
        return [(p.name, d) for p, d in zip(pools, drivers)]

    async def choose_pool(self, flavor: str | None = None, *,
                          exclude: frozenset[str] = frozenset()) -> str:
        """A pool at random by weight: the flavor's pools, or for no flavor
        the pools without one (all pools when every pool has a flavor).
        Draining pools take no new queues."""
        pools = [p for p in await self.pools() if p.name not in exclude and not p.draining]
        if not pools:
            raise NoPools("No pools registered.")
        if flavor is not None:
            candidates = [p for p in pools if p.flavor == flavor]
            if not candidates:
                raise errors.ValidationFailed(f"Flavor {flavor} does not exist or has no pools.")
        else:
            candidates = [p for p in pools if p.flavor is None] or pools
        weights = [max(p.weight, 0) for p in candidates]
        if not any(weights):
            raise NoPools("No pool takes new queues (every weight is 0).")
        return self.rng.choices(candidates, weights=weights)[0].name

    # --- the catalogue --------------------------------------------------------------
    async def placement(self, project: str, queue: str) -> Placement | None:
        """The queue's placement, None when it is not placed. A fresh stable
        placement comes from the cache; a MOVING queue is waited out."""
        key = (project, queue)
        cached = self._catalogue.get(key)
        if cached is not None and self.monotonic() - cached[1] < self.cache_seconds:
            return cached[0]
        deadline: float | None = None
        while True:
            # Taken before the read: the entry's age is never understated.
            read_at = self.monotonic()
            placement = await self.control.lookup(project, queue)
            if placement is None or not placement.stable:
                self._catalogue.pop(key, None)
            else:
                self._remember(key, placement, read_at)
            if placement is None or placement.state != MOVING:
                return placement
            if deadline is None:
                deadline = read_at + self.move_wait
            if self.monotonic() >= deadline:
                raise QueueMoving(f"Queue {queue} is being moved to another pool; "
                                  "try again shortly.")
            await asyncio.sleep(MOVE_POLL_SECONDS)

    async def lookup(self, project: str, queue: str) -> str | None:
        """The pool of the queue, None when it is not placed."""
        placement = await self.placement(project, queue)
        return placement.pool if placement is not None else None

    def _remember(self, key: tuple[str, str], placement: Placement, read_at: float) -> None:
        if len(self._catalogue) >= CATALOGUE_CACHE_SIZE:
            self._catalogue.clear()
        self._catalogue[key] = (placement, read_at)

    def forget_cached(self, project: str, queue: str) -> None:
        self._catalogue.pop((project, queue), None)

    async def fallback(self) -> DataDriver:
        pools = await self.pools()
        if not pools:
            raise NoPools("No pools registered.")
        return await self.driver_for(pools[0].name)

    async def route(self, project: str, queue: str) -> DataDriver:
        """The driver of the queue's pool; for a queue not placed, the
        first pool (it answers for a queue that does not exist)."""
        pool = await self.lookup(project, queue)
        if pool is None:
            return await self.fallback()
        return await self.driver_for(pool)

    async def place(self, project: str, queue: str, flavor: str | None = None) -> DataDriver:
        """The driver of the queue's pool, placing the queue first if needed."""
        return await self.driver_for(await self.place_name(project, queue, flavor))

    async def place_name(self, project: str, queue: str, flavor: str | None = None,
                         *, near: str | None = None) -> str:
        """The queue's pool, placing it first if needed: on ``near`` when
        given and not draining, else on a pool chosen by weight."""
        for _ in range(PLACE_ATTEMPTS):
            placement = await self.placement(project, queue)
            if placement is not None:
                return placement.pool
            chosen = near or await self.choose_pool(flavor)
            near = None
            read_at = self.monotonic()
            placed = await self.control.place(project, queue, chosen)
            if placed is None:
                # The chosen pool began draining since the pool list was read.
                self.invalidate()
                continue
            if placed.stable:
                self._remember((project, queue), placed, read_at)
                return placed.pool
            # Placed by another process and already on the move: wait it out.
        raise NoPools("No pool takes new queues (every candidate is draining).")

    # --- delivery ids ----------------------------------------------------------------
    async def unwrap(self, delivery_id: str) -> tuple[DataDriver, str]:
        pool, sep, inner = delivery_id.partition(ID_SEP)
        if sep and pool and any(p.name == pool for p in await self.pools()):
            return await self.driver_for(pool), inner
        # Not one of ours: the first pool answers "no such delivery".
        return await self.fallback(), delivery_id
