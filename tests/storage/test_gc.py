"""Garbage collection of expired messages and claims, and what it reports."""

from __future__ import annotations

import pytest

from tests.storage.helpers import claim, list_deliveries, list_ids, post, subscribe
from tidings import errors
from tidings.storage.base import GcResult

NOTHING = GcResult()


async def test_gc_with_nothing_expired_returns_zero(driver, project):
    assert await driver.gc() == NOTHING
    await post(driver, project, "q", 3)
    assert await driver.gc() == NOTHING
    assert len(await list_ids(driver, project, "q")) == 3


async def test_gc_removes_expired_messages(driver, project, clock):
    await post(driver, project, "q", 5, ttl=60)
    clock.advance(60)
    assert await driver.gc() == GcResult(messages=5)
    assert await driver.gc() == NOTHING
    assert await list_ids(driver, project, "q") == []
    assert (await driver.queues.stats(project, "q")).total == 0


async def test_gc_leaves_live_messages_alone(driver, project, clock):
    await post(driver, project, "q", 3, ttl=60)
    alive = await post(driver, project, "q", 2, ttl=3600)
    delayed = await post(driver, project, "q", 1, ttl=3600, delay=600)
    clock.advance(60)
    claim_id, claimed = await claim(driver, project, "q", limit=1)
    assert [m.id for m in claimed] == alive[:1]

    assert await driver.gc() == GcResult(messages=3)

    assert await list_ids(driver, project, "q", include_claimed=True, include_delayed=True) == (
        alive + delayed
    )
    got = await driver.claims.get(project, "q", claim_id)
    assert [m.id for m in got.messages] == alive[:1]
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free) == (1, 2)
    assert await driver.gc() == NOTHING


async def test_gc_removes_expired_claims_and_releases_their_messages(driver, project, clock):
    posted = await post(driver, project, "q", 2, ttl=3600)
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    # The claim goes; its messages are released, not removed.
    assert await driver.gc() == GcResult(claims=1)
    assert await driver.gc() == NOTHING
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)
    assert await list_ids(driver, project, "q") == posted
    _, claimed = await claim(driver, project, "q")
    assert [m.id for m in claimed] == posted
    assert [m.claim_count for m in claimed] == [2, 2]


async def test_gc_keeps_claimed_messages_within_grace(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=60)
    await claim(driver, project, "q", ttl=300, grace=60)
    clock.advance(200)
    await driver.gc()
    assert (await driver.messages.get(project, "q", message_id)).id == message_id


async def test_gc_keeps_queues(driver, project, clock):
    await driver.queues.create(project, "q", {"a": 1})
    await post(driver, project, "q", 2, ttl=60)
    clock.advance(60)
    await driver.gc()
    assert await driver.queues.get_metadata(project, "q") == {"a": 1}
    assert await driver.queues.count(project) == 1


async def test_gc_spans_projects_and_queues(driver, project, clock):
    other = project + "-other"
    await post(driver, project, "a", 2, ttl=60)
    await post(driver, other, "b", 3, ttl=60)
    keep = await post(driver, other, "b", 1, ttl=3600)
    clock.advance(60)
    assert await driver.gc() == GcResult(messages=5)
    assert await driver.gc() == NOTHING
    assert await list_ids(driver, other, "b") == keep


async def test_queue_works_normally_after_gc(driver, project, clock):
    await post(driver, project, "q", 3, ttl=60)
    clock.advance(60)
    await driver.gc()
    posted = await post(driver, project, "q", 2)
    assert await list_ids(driver, project, "q") == posted
    _, claimed = await claim(driver, project, "q")
    assert [m.id for m in claimed] == posted


async def test_gc_reports_each_kind_it_removed(driver, project, clock):
    """Every kind at once, in separate queues so that none hides another
    (a claim would keep its messages alive past their ttl)."""
    await post(driver, project, "expiring", 3, ttl=60)
    await post(driver, project, "expiring", 1, ttl=3600)
    await post(driver, project, "claimed", 2, ttl=3600)
    await claim(driver, project, "claimed", ttl=60, grace=60)
    await subscribe(driver, project, "notified", "http://example.com/short", ttl=60)
    long = await subscribe(driver, project, "notified", "http://example.com/long", ttl=3600)
    await post(driver, project, "notified", 2, ttl=3600)  # a delivery per subscription each
    clock.advance(60)

    assert await driver.gc() == GcResult(messages=3, claims=1, subscriptions=1, deliveries=2)
    assert await driver.gc() == NOTHING
    left = await list_deliveries(driver, project, "notified")
    assert sorted(d.subscription_id for d in left) == [long, long]
