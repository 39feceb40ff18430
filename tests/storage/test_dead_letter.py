"""Dead letter queues: messages claimed too often move (or are dropped)."""

from __future__ import annotations

import pytest

from tests.storage.helpers import claim, claim_result, list_messages, post
from tidings import errors
from tidings.storage.base import ClaimResult, DeadLetterPolicy

TO_DLQ = DeadLetterPolicy(max_claim_count=1, queue="dlq", ttl=600)


async def claim_and_release(driver, project, queue="q", policy=TO_DLQ, **kwargs):
    claim_id, claimed = await claim(driver, project, queue, dead_letter=policy, **kwargs)
    if claim_id is not None:
        await driver.claims.delete(project, queue, claim_id)
    return claimed


async def test_message_claimed_max_times_moves_to_dead_letter_queue(driver, project, clock):
    await post(driver, project, "q", body="poison")
    assert len(await claim_and_release(driver, project)) == 1
    clock.advance(5)

    assert await claim(driver, project, "q", dead_letter=TO_DLQ) == (None, [])

    assert (await driver.queues.stats(project, "q")).total == 0
    page, _ = await list_messages(driver, project, "q", include_claimed=True)
    assert page == []
    page, _ = await list_messages(driver, project, "dlq")
    assert [m.body for m in page] == ["poison"]
    assert (await driver.queues.stats(project, "dlq")).total == 1


async def test_claim_reports_how_many_messages_it_dead_lettered(driver, project):
    await post(driver, project, "q", 3, body="poison")
    # An ordinary claim (under the policy, nothing claimed too often) moves none.
    first = await claim_result(driver, project, "q", limit=3, dead_letter=TO_DLQ)
    assert (len(first.messages), first.dead_lettered) == (3, 0)
    await driver.claims.delete(project, "q", first.claim_id)
    fresh = await post(driver, project, "q", 2, body="fresh")

    # The three poisoned ones move, and the claim still fills up.
    result = await claim_result(driver, project, "q", limit=1, dead_letter=TO_DLQ)
    assert [m.id for m in result.messages] == fresh[:1]
    assert result.dead_lettered == 3
    assert len((await list_messages(driver, project, "dlq"))[0]) == 3
    # Moved once, counted once.
    result = await claim_result(driver, project, "q", limit=5, dead_letter=TO_DLQ)
    assert [m.id for m in result.messages] == fresh[1:]
    assert result.dead_lettered == 0

    # A claim that finds only messages to move claims nothing, yet moved them.
    await post(driver, project, "q2", 2, body="poison")
    await claim_and_release(driver, project, "q2")
    assert await claim_result(driver, project, "q2", dead_letter=TO_DLQ) == ClaimResult(
        None, [], 2)
    assert len((await list_messages(driver, project, "dlq"))[0]) == 5


async def test_dead_lettered_message_has_the_dead_letter_ttl(driver, project, clock):
    await post(driver, project, "q", ttl=3600)
    await claim_and_release(driver, project)
    clock.advance(100)
    await claim(driver, project, "q", dead_letter=TO_DLQ)

    page, _ = await list_messages(driver, project, "dlq")
    assert [m.ttl for m in page] == [600]
    clock.advance(599)
    assert len((await list_messages(driver, project, "dlq"))[0]) == 1
    clock.advance(1)
    assert (await list_messages(driver, project, "dlq"))[0] == []


async def test_dead_lettered_message_is_claimable_in_dead_letter_queue(driver, project):
    await post(driver, project, "q", body="poison")
    await claim_and_release(driver, project)
    await claim(driver, project, "q", dead_letter=TO_DLQ)

    claim_id, claimed = await claim(driver, project, "dlq")
    assert claim_id is not None
    assert [m.body for m in claimed] == ["poison"]
    got = await driver.claims.get(project, "dlq", claim_id)
    assert [m.id for m in got.messages] == [m.id for m in claimed]


async def test_dead_letter_queue_is_listed_as_a_queue(driver, project):
    await post(driver, project, "q")
    await claim_and_release(driver, project)
    await claim(driver, project, "q", dead_letter=TO_DLQ)
    records = await driver.queues.list(project, marker=None, limit=10, detailed=False)
    assert [r.name for r in records] == ["dlq", "q"]


async def test_dead_lettering_keeps_filling_the_claim(driver, project):
    poisoned = await post(driver, project, "q", 2, body="poison")
    await claim_and_release(driver, project, limit=2)
    fresh = await post(driver, project, "q", 3, body="fresh")

    claim_id, claimed = await claim(driver, project, "q", limit=2, dead_letter=TO_DLQ)
    assert claim_id is not None
    assert [m.id for m in claimed] == fresh[:2]
    assert [m.claim_count for m in claimed] == [1, 1]
    got = await driver.claims.get(project, "q", claim_id)
    assert [m.id for m in got.messages] == fresh[:2]
    page, _ = await list_messages(driver, project, "dlq")
    assert len(page) == len(poisoned)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free) == (2, 1)


async def test_claim_with_dead_lettered_and_live_messages_claims_each_once(driver, project):
    # One poisoned message ahead of fresh ones, and a limit that the fresh
    # ones alone can fill: every fresh message is claimed at most once.
    await post(driver, project, "q", body="poison")
    await claim_and_release(driver, project, limit=1)
    fresh = await post(driver, project, "q", 4, body="fresh")

    _, claimed = await claim(driver, project, "q", limit=3, dead_letter=TO_DLQ)
    assert [m.id for m in claimed] == fresh[:3]
    for message in await driver.messages.bulk_get(project, "q", fresh):
        assert message.claim_count == (1 if message.id in fresh[:3] else 0)


async def test_max_claim_count_two_takes_two_claims(driver, project):
    policy = DeadLetterPolicy(max_claim_count=2, queue="dlq", ttl=600)
    await post(driver, project, "q", body="poison")
    assert len(await claim_and_release(driver, project, policy=policy)) == 1
    assert len(await claim_and_release(driver, project, policy=policy)) == 1
    assert (await list_messages(driver, project, "dlq"))[0] == []

    assert await claim(driver, project, "q", dead_letter=policy) == (None, [])
    assert [m.body for m in (await list_messages(driver, project, "dlq"))[0]] == ["poison"]


async def test_expired_claim_counts_toward_max_claim_count(driver, project, clock):
    await post(driver, project, "q", body="poison")
    await claim(driver, project, "q", ttl=60, dead_letter=TO_DLQ)
    clock.advance(60)
    assert await claim(driver, project, "q", dead_letter=TO_DLQ) == (None, [])
    assert [m.body for m in (await list_messages(driver, project, "dlq"))[0]] == ["poison"]


async def test_policy_without_queue_drops_the_message(driver, project):
    policy = DeadLetterPolicy(max_claim_count=1, queue=None, ttl=None)
    [message_id] = await post(driver, project, "q")
    await claim_and_release(driver, project, policy=policy)

    # Dropped, not moved: no dead letter is reported.
    assert await claim_result(driver, project, "q", dead_letter=policy) == ClaimResult(
        None, [], 0)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)
    assert (await driver.queues.stats(project, "q")).total == 0
    records = await driver.queues.list(project, marker=None, limit=10, detailed=False)
    assert [r.name for r in records] == ["q"]


async def test_policy_without_ttl_still_moves_the_message(driver, project, clock):
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", ttl=None)
    await post(driver, project, "q", ttl=3600, body="poison")
    await claim_and_release(driver, project, policy=policy)
    clock.advance(100)
    assert await claim(driver, project, "q", dead_letter=policy) == (None, [])

    page, _ = await list_messages(driver, project, "dlq")
    assert [m.body for m in page] == ["poison"]
    assert page[0].ttl > 0


async def test_claim_without_policy_never_dead_letters(driver, project):
    [message_id] = await post(driver, project, "q")
    for _ in range(3):
        assert len(await claim_and_release(driver, project, policy=None)) == 1
    assert (await driver.messages.get(project, "q", message_id)).claim_count == 3
    assert (await list_messages(driver, project, "dlq"))[0] == []


async def test_dead_letter_queue_stays_in_the_project(driver, project):
    await post(driver, project, "q", body="poison")
    await claim_and_release(driver, project)
    await claim(driver, project, "q", dead_letter=TO_DLQ)
    other = project + "-other"
    assert (await list_messages(driver, other, "dlq"))[0] == []
    assert len((await list_messages(driver, project, "dlq"))[0]) == 1
