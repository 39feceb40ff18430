"""Claims: create, get, renew, release, expiry, message lifetime, concurrency."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.helpers import claim, claimed_ids, ids, list_ids, post
from tidings import errors

# --- create -----------------------------------------------------------------


async def test_claim_takes_up_to_limit_in_fifo_order(driver, project):
    posted = await post(driver, project, "q", 5)
    claim_id, claimed = await claim(driver, project, "q", limit=3)
    assert claim_id
    assert ids(claimed) == posted[:3]
    assert [m.body for m in claimed] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_claim_takes_fewer_when_fewer_are_available(driver, project):
    posted = await post(driver, project, "q", 2)
    _, claimed = await claim(driver, project, "q", limit=10)
    assert ids(claimed) == posted


async def test_claim_of_missing_queue_returns_nothing(driver, project):
    assert await claim(driver, project, "missing") == (None, [])


async def test_claim_of_empty_queue_returns_nothing(driver, project):
    await driver.queues.create(project, "q", {})
    assert await claim(driver, project, "q") == (None, [])


async def test_claim_when_everything_is_claimed_returns_nothing(driver, project):
    await post(driver, project, "q", 2)
    await claim(driver, project, "q")
    assert await claim(driver, project, "q") == (None, [])


async def test_claimed_messages_are_invisible_to_other_claims(driver, project):
    posted = await post(driver, project, "q", 6)
    first = await claimed_ids(driver, project, "q", limit=2)
    second = await claimed_ids(driver, project, "q", limit=2)
    third = await claimed_ids(driver, project, "q", limit=10)
    assert first == posted[:2]
    assert second == posted[2:4]
    assert third == posted[4:]


async def test_claim_ids_are_distinct(driver, project):
    await post(driver, project, "q", 3)
    claim_ids = [(await claim(driver, project, "q", limit=1))[0] for _ in range(3)]
    assert len(set(claim_ids)) == 3


async def test_claimed_messages_carry_claim_id_and_count(driver, project):
    await post(driver, project, "q", 2)
    claim_id, claimed = await claim(driver, project, "q")
    assert [m.claim_id for m in claimed] == [claim_id, claim_id]
    assert [m.claim_count for m in claimed] == [1, 1]


async def test_claim_count_grows_with_each_claim(driver, project):
    [message_id] = await post(driver, project, "q")
    for expected in (1, 2, 3):
        claim_id, claimed = await claim(driver, project, "q")
        assert [m.claim_count for m in claimed] == [expected]
        await driver.claims.delete(project, "q", claim_id)
    assert (await driver.messages.get(project, "q", message_id)).claim_count == 3


async def test_claimed_message_reports_age(driver, project, clock):
    await post(driver, project, "q")
    clock.advance(12)
    _, [message] = await claim(driver, project, "q")
    assert message.age == 12


async def test_claim_sees_own_messages_regardless_of_client(driver, project):
    # Claims have no echo: the poster itself can claim what it posted.
    posted = await post(driver, project, "q", 2)
    assert await claimed_ids(driver, project, "q") == posted


# --- get --------------------------------------------------------------------


async def test_get_returns_ttl_grace_age_and_messages(driver, project, clock):
    posted = await post(driver, project, "q", 3)
    claim_id, _ = await claim(driver, project, "q", ttl=120, grace=90, limit=2)
    clock.advance(15)
    got = await driver.claims.get(project, "q", claim_id)
    assert got.id == claim_id
    assert (got.ttl, got.grace, got.age) == (120, 90, 15)
    assert ids(got.messages) == posted[:2]
    assert [m.claim_id for m in got.messages] == [claim_id, claim_id]


async def test_get_leaves_out_deleted_messages(driver, project):
    posted = await post(driver, project, "q", 3)
    claim_id, _ = await claim(driver, project, "q")
    await driver.messages.delete(project, "q", posted[1], claim_id)
    got = await driver.claims.get(project, "q", claim_id)
    assert ids(got.messages) == [posted[0], posted[2]]


async def test_get_unknown_claim_raises(driver, project):
    await post(driver, project, "q")
    await claim(driver, project, "q")
    for unknown in ["nope", "", "0" * 24, "00000000-0000-0000-0000-000000000000"]:
        with pytest.raises(errors.ClaimNotFound):
            await driver.claims.get(project, "q", unknown)


async def test_get_claim_through_other_queue_raises(driver, project):
    await post(driver, project, "q")
    await post(driver, project, "other")
    claim_id, _ = await claim(driver, project, "q")
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "other", claim_id)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "missing", claim_id)


async def test_get_claim_through_other_project_raises(driver, project):
    await post(driver, project, "q")
    await post(driver, project + "-other", "q")
    claim_id, _ = await claim(driver, project, "q")
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project + "-other", "q", claim_id)


async def test_get_expired_claim_raises(driver, project, clock):
    await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(59)
    await driver.claims.get(project, "q", claim_id)
    clock.advance(1)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)


# --- update -----------------------------------------------------------------


async def test_update_renews_the_claim(driver, project, clock):
    posted = await post(driver, project, "q", 2)
    claim_id, _ = await claim(driver, project, "q", ttl=60, grace=60)
    clock.advance(30)
    await driver.claims.update(project, "q", claim_id, ttl=300, grace=60)
    clock.advance(100)  # past the old expiry, within the new one
    got = await driver.claims.get(project, "q", claim_id)
    assert (got.ttl, got.grace) == (300, 60)
    assert ids(got.messages) == posted
    assert await claim(driver, project, "q") == (None, [])
    assert await list_ids(driver, project, "q") == []
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free) == (2, 0)


async def test_update_counts_the_new_ttl_from_now(driver, project, clock):
    posted = await post(driver, project, "q", 1)
    claim_id, _ = await claim(driver, project, "q", ttl=100)
    clock.advance(50)
    await driver.claims.update(project, "q", claim_id, ttl=100, grace=60)
    clock.advance(99)
    assert ids((await driver.claims.get(project, "q", claim_id)).messages) == posted
    clock.advance(1)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)
    assert await claimed_ids(driver, project, "q") == posted


async def test_update_unknown_claim_raises(driver, project):
    await post(driver, project, "q")
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(project, "q", "nope", ttl=60, grace=60)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(project, "missing", "nope", ttl=60, grace=60)


async def test_update_claim_through_other_queue_raises(driver, project):
    await post(driver, project, "q")
    await post(driver, project, "other")
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(project, "other", claim_id, ttl=600, grace=60)


async def test_update_expired_claim_raises(driver, project, clock):
    posted = await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(project, "q", claim_id, ttl=600, grace=60)
    assert await claimed_ids(driver, project, "q") == posted


async def test_update_deleted_claim_raises(driver, project):
    await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", claim_id)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(project, "q", claim_id, ttl=600, grace=60)


async def test_update_resets_age(driver, project, clock):
    await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q", ttl=300)
    clock.advance(40)
    await driver.claims.update(project, "q", claim_id, ttl=300, grace=60)
    clock.advance(5)
    assert (await driver.claims.get(project, "q", claim_id)).age == 5


# --- delete -----------------------------------------------------------------


async def test_delete_releases_the_messages(driver, project):
    posted = await post(driver, project, "q", 3)
    claim_id, _ = await claim(driver, project, "q", limit=2)
    await driver.claims.delete(project, "q", claim_id)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)
    assert await list_ids(driver, project, "q") == posted
    message = await driver.messages.get(project, "q", posted[0])
    assert message.claim_id is None
    assert await claimed_ids(driver, project, "q") == posted


async def test_delete_is_idempotent(driver, project):
    await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", claim_id)
    await driver.claims.delete(project, "q", claim_id)
    await driver.claims.delete(project, "q", "never-existed")
    await driver.claims.delete(project, "missing", "never-existed")


async def test_delete_through_other_queue_does_not_release(driver, project):
    posted = await post(driver, project, "q", 2)
    await post(driver, project, "other")
    claim_id, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "other", claim_id)
    await driver.claims.delete(project + "-other", "q", claim_id)
    assert ids((await driver.claims.get(project, "q", claim_id)).messages) == posted
    assert await claim(driver, project, "q") == (None, [])


async def test_delete_of_released_claim_does_not_touch_a_newer_claim(driver, project):
    posted = await post(driver, project, "q")
    old, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", old)
    new, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", old)
    assert (await driver.messages.get(project, "q", posted[0])).claim_id == new


# --- expiry -----------------------------------------------------------------


async def test_expired_claim_releases_its_messages(driver, project, clock):
    posted = await post(driver, project, "q", 2)
    claim_id, _ = await claim(driver, project, "q", ttl=60, grace=60)
    clock.advance(59)
    assert await claim(driver, project, "q") == (None, [])
    clock.advance(1)
    assert await list_ids(driver, project, "q") == posted
    message = await driver.messages.get(project, "q", posted[0])
    assert message.claim_id is None
    new_id, claimed = await claim(driver, project, "q")
    assert new_id != claim_id
    assert ids(claimed) == posted
    assert [m.claim_count for m in claimed] == [2, 2]


async def test_expired_claim_counts_as_free_in_stats(driver, project, clock):
    await post(driver, project, "q", 2)
    await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free) == (0, 2)


async def test_claim_extends_message_lifetime_to_claim_expiry_plus_grace(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=60)
    _, [claimed] = await claim(driver, project, "q", ttl=300, grace=60)
    assert claimed.ttl >= 360
    assert (await driver.messages.get(project, "q", message_id)).ttl >= 360
    clock.advance(359)
    assert (await driver.messages.get(project, "q", message_id)).id == message_id
    assert ids(await driver.messages.bulk_get(project, "q", [message_id])) == [message_id]


async def test_claim_does_not_shorten_message_lifetime(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=3600)
    _, [claimed] = await claim(driver, project, "q", ttl=60, grace=60)
    assert claimed.ttl == 3600
    clock.advance(3599)
    assert (await driver.messages.get(project, "q", message_id)).ttl == 3600


async def test_renew_extends_message_lifetime(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=60)
    claim_id, _ = await claim(driver, project, "q", ttl=60, grace=60)
    clock.advance(50)
    await driver.claims.update(project, "q", claim_id, ttl=600, grace=100)
    clock.advance(600 + 99)
    assert (await driver.messages.get(project, "q", message_id)).ttl >= 50 + 700


# --- concurrency ------------------------------------------------------------


async def _due_between_many_not_due(driver, project) -> list[str]:
    """A queue whose due messages lie between long runs of delayed ones,
    the first run ending in due messages: past every page a driver reads
    the queue in, and across a page that ends in a message it takes."""
    due: list[str] = []
    await post(driver, project, "q", 1, delay=60)
    due += await post(driver, project, "q", 4)
    await post(driver, project, "q", 1, delay=60)
    due += await post(driver, project, "q", 2)
    await post(driver, project, "q", 300, delay=60)
    due += await post(driver, project, "q", 3)
    return due


async def test_claim_reaches_past_messages_it_cannot_take(driver, project):
    due = await _due_between_many_not_due(driver, project)
    _, claimed = await claim(driver, project, "q", limit=5)
    assert ids(claimed) == due[:5]
    _, claimed = await claim(driver, project, "q", limit=5)
    assert ids(claimed) == due[5:]
    assert (await driver.queues.stats(project, "q")).claimed == len(due)


async def test_concurrent_claims_get_every_message_exactly_once(driver, project):
    posted = []
    for _ in range(10):
        posted += await post(driver, project, "q", 20)
    assert len(posted) == 200

    async def worker() -> list[str]:
        got: list[str] = []
        while True:
            claim_id, claimed = await claim(driver, project, "q", limit=7)
            if claim_id is None:
                return got
            got += ids(claimed)

    results = await asyncio.gather(*(worker() for _ in range(8)))
    everything = [message_id for result in results for message_id in result]
    assert len(everything) == 200
    assert set(everything) == set(posted)
    assert (await driver.queues.stats(project, "q")).claimed == 200


async def test_concurrent_claims_and_pops_never_share_a_message(driver, project):
    posted = await post(driver, project, "q", 100)

    async def claimer() -> list[str]:
        got: list[str] = []
        while (result := await claim(driver, project, "q", limit=5))[0] is not None:
            got += ids(result[1])
        return got

    async def popper() -> list[str]:
        got: list[str] = []
        while popped := await driver.messages.pop(project, "q", 5):
            got += ids(popped)
        return got

    results = await asyncio.gather(claimer(), popper(), claimer(), popper())
    everything = [message_id for result in results for message_id in result]
    assert sorted(everything) == sorted(posted)
