"""One pooled deployment over an SQLite, a Redis and a PostgreSQL pool."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pooling.support import pooled_over
from tests.support.clock import FakeClock
from tests.support.postgres_server import shared_server
from tests.support.redis_server import session_redis, unique_prefix
from tidings.storage.base import DeliveryKind, NewMessage, NewSubscription
from tidings.storage.pooling.driver import PooledDriver

CLIENT = "11111111-1111-4111-8111-111111111111"
WEIGHTS = {"lite": 100, "red": 200, "pg": 300}


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[PooledDriver]:
    pg = shared_server()
    database = f"pool_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    urls = {
        "lite": f"sqlite:///{tmp_path}/lite.db?sync=normal",
        "red": f"{session_redis().url}?prefix={unique_prefix()}",
        "pg": pg.url(database, max_size=4),
    }
    async with pooled_over(tmp_path, FakeClock(), urls, WEIGHTS, seed=11) as driver:
        yield driver


async def test_queues_spread_by_weight(pooled: PooledDriver) -> None:
    project = "spread"
    for i in range(300):
        assert await pooled.queues.create(project, f"q{i:03d}", {})
    placed = Counter([await pooled.lookup(project, f"q{i:03d}") for i in range(300)])
    assert sum(placed.values()) == 300
    total = sum(WEIGHTS.values())
    for name, weight in WEIGHTS.items():
        expected = 300 * weight / total
        # Binomial sd is at most ~8.7 here: 4 sd of slack.
        assert abs(placed[name] - expected) < 35, placed
    # Each pool holds exactly the queues the catalogue says it does.
    for name in WEIGHTS:
        inner = await pooled.driver_for(name)
        assert await inner.queues.count(project) == placed[name]


async def test_each_operation_reaches_the_queues_pool(pooled: PooledDriver) -> None:
    project = "route"
    for i in range(12):
        await pooled.messages.post(project, f"lazy{i}", [NewMessage(body=i, ttl=600)], CLIENT)
    for i in range(12):
        pool = await pooled.lookup(project, f"lazy{i}")
        assert pool in WEIGHTS
        inner = await pooled.driver_for(pool)
        others = [await pooled.driver_for(n) for n in WEIGHTS if n != pool]
        # The message is on its pool and nowhere else.
        page, _ = await inner.messages.list(project, f"lazy{i}", marker=None, limit=10,
                                            client_id=None, echo=True, include_claimed=True,
                                            include_delayed=True)
        assert [m.body for m in page] == [i]
        for other in others:
            with pytest.raises(Exception):
                await other.queues.get_metadata(project, f"lazy{i}")
        # A claim through the pool is a claim on the inner driver.
        result = await pooled.claims.create(project, f"lazy{i}", ttl=60, grace=60,
                                            limit=5, dead_letter=None)
        claim_id, claimed = result.claim_id, result.messages
        assert claim_id and (await inner.claims.get(project, f"lazy{i}", claim_id)).id == claim_id
        stats = await inner.queues.stats(project, f"lazy{i}")
        assert (stats.claimed, stats.free) == (1, 0)
        assert await pooled.queues.stats(project, f"lazy{i}") == stats
        await pooled.messages.delete(project, f"lazy{i}", claimed[0].id, claim_id)
        assert (await inner.queues.stats(project, f"lazy{i}")).total == 0
        await pooled.queues.set_metadata(project, f"lazy{i}", {"n": i})
        assert await inner.queues.get_metadata(project, f"lazy{i}") == {"n": i}
        await pooled.queues.delete(project, f"lazy{i}")
        assert await pooled.lookup(project, f"lazy{i}") is None
        assert await pooled.queues.count(project) == 11 - i
        with pytest.raises(Exception):
            await inner.queues.get_metadata(project, f"lazy{i}")


async def test_subscriptions_and_deliveries_route_by_queue(pooled: PooledDriver) -> None:
    project = "subs"
    pools = set()
    for i in range(9):
        queue = f"s{i}"
        sid = await pooled.subscriptions.create(
            project, queue, NewSubscription(subscriber="http://127.0.0.1:9/", ttl=600,
                                            options={}))
        assert sid
        pool = await pooled.lookup(project, queue)
        pools.add(pool)
        inner = await pooled.driver_for(pool)
        assert (await inner.subscriptions.get(project, queue, sid)).id == sid
        await pooled.messages.post(project, queue, [NewMessage(body=i, ttl=600)], CLIENT)
        await pooled.deliveries.enqueue(project, queue, sid, DeliveryKind.CONFIRMATION, {})
    assert len(pools) > 1
    leased = []
    while batch := await pooled.deliveries.lease(limit=4, lease_seconds=60):
        leased.extend(batch)
    assert len(leased) == 18 and len({d.id for d in leased}) == 18
    assert {d.id.partition(":")[0] for d in leased} == pools
    for delivery in leased:
        await pooled.deliveries.delivered(delivery.id)
    for name in WEIGHTS:
        inner = await pooled.driver_for(name)
        assert await inner.deliveries.lease(limit=100, lease_seconds=60) == []


async def test_listing_pages_across_pools(pooled: PooledDriver) -> None:
    project = "pages"
    names = [f"n{i:02d}" for i in range(40)]
    for name in names:
        await pooled.queues.create(project, name, {"i": name})
    assert len({await pooled.lookup(project, n) for n in names}) == 3
    assert await pooled.queues.count(project) == 40
    seen: list[str] = []
    marker = None
    while page := await pooled.queues.list(project, marker=marker, limit=7, detailed=True):
        assert len(page) <= 7
        assert all(r.metadata == {"i": r.name} for r in page)
        seen.extend(r.name for r in page)
        marker = page[-1].name
    assert seen == names
    after = await pooled.queues.list(project, marker="n09", limit=3, detailed=False)
    assert [r.name for r in after] == ["n10", "n11", "n12"]


async def test_flavor_places_queues_on_its_pools(pooled: PooledDriver) -> None:
    pg = await pooled.control.pool_get("pg")
    assert pg is not None
    pg.flavor = "durable"
    await pooled.control.pool_upsert(pg)
    pooled.invalidate()
    for i in range(20):
        await pooled.queues.create("fl", f"d{i}", {"_flavor": "durable"})
        await pooled.queues.create("fl", f"u{i}", {})
    assert {await pooled.lookup("fl", f"d{i}") for i in range(20)} == {"pg"}
    assert "pg" not in {await pooled.lookup("fl", f"u{i}") for i in range(20)}


async def test_health_and_gc_fan_out(pooled: PooledDriver) -> None:
    health = await pooled.health()
    assert health["storage_reachable"] is True
    assert set(health["pools"]) == set(WEIGHTS)
    assert await pooled.is_alive()
    assert (await pooled.gc()).total >= 0
