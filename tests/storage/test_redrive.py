"""MessageController.move, the driver step of dead-letter redrive
(tidings.api.redrive): messages under a claim move to another queue once,
bodies unchanged, as fresh messages there."""

from __future__ import annotations

from tests.storage.helpers import claim, list_messages, post
from tidings.storage.base import DeadLetterPolicy

TO_DLQ = DeadLetterPolicy(max_claim_count=1, queue="dlq", ttl=600)


async def test_move_claimed_messages(driver, project):
    await post(driver, project, "dlq", 3)
    claim_id, claimed = await claim(driver, project, "dlq", limit=3)
    new_ids = await driver.messages.move(project, "dlq", "work", [m.id for m in claimed],
                                         claim_id)
    assert len(new_ids) == 3
    assert (await driver.queues.stats(project, "dlq")).total == 0
    page, _ = await list_messages(driver, project, "work")
    assert [m.id for m in page] == new_ids
    assert [m.body for m in page] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(m.claim_id is None and m.claim_count == 0 for m in page)
    # Fresh in the target: claimable at once.
    assert len((await claim(driver, project, "work", limit=10))[1]) == 3


async def test_move_keeps_order_of_ids_and_appends(driver, project):
    existing = await post(driver, project, "work", 1, body="old")
    await post(driver, project, "dlq", 3)
    claim_id, claimed = await claim(driver, project, "dlq", limit=3)
    new_ids = await driver.messages.move(project, "dlq", "work", [m.id for m in claimed],
                                         claim_id)
    page, _ = await list_messages(driver, project, "work")
    assert [m.id for m in page] == existing + new_ids
    assert [m.body for m in page][1:] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_move_only_what_the_claim_holds(driver, project):
    await post(driver, project, "dlq", 2)
    claim_id, _ = await claim(driver, project, "dlq", limit=1)
    page, _ = await list_messages(driver, project, "dlq", include_claimed=True)
    all_ids = [m.id for m in page]
    # The unclaimed one and an unknown id are skipped.
    moved = await driver.messages.move(project, "dlq", "work", [*all_ids, "nonexistent"],
                                       claim_id)
    assert len(moved) == 1
    left, _ = await list_messages(driver, project, "dlq", include_claimed=True)
    assert [m.id for m in left] == [all_ids[1]]


async def test_move_with_a_wrong_or_expired_claim_moves_nothing(driver, project, clock):
    await post(driver, project, "dlq", 2)
    claim_id, claimed = await claim(driver, project, "dlq", limit=2, ttl=60, grace=0)
    ids = [m.id for m in claimed]
    assert await driver.messages.move(project, "dlq", "work", ids, "f" * 24) == []
    clock.advance(61)
    assert await driver.messages.move(project, "dlq", "work", ids, claim_id) == []
    assert (await driver.queues.stats(project, "dlq")).total == 2
    assert (await driver.queues.stats(project, "work")).total == 0


async def test_move_twice_moves_once(driver, project):
    await post(driver, project, "dlq", 2)
    claim_id, claimed = await claim(driver, project, "dlq", limit=2)
    ids = [m.id for m in claimed]
    first = await driver.messages.move(project, "dlq", "work", ids, claim_id)
    again = await driver.messages.move(project, "dlq", "work", ids, claim_id)
    assert len(first) == 2 and again == []
    assert (await driver.queues.stats(project, "work")).total == 2


async def test_move_ttl(driver, project, clock):
    await post(driver, project, "dlq", 1, ttl=1000)
    await post(driver, project, "dlq2", 1, ttl=1000)
    claim_id, claimed = await claim(driver, project, "dlq", ttl=60, grace=0)
    clock.advance(10)
    await driver.messages.move(project, "dlq", "work", [claimed[0].id], claim_id)
    claim_id, claimed = await claim(driver, project, "dlq2", ttl=60, grace=0)
    await driver.messages.move(project, "dlq2", "work", [claimed[0].id], claim_id, ttl=120)
    page, _ = await list_messages(driver, project, "work")
    assert [m.ttl for m in page] == [1000, 120]
    clock.advance(120)
    page, _ = await list_messages(driver, project, "work")
    assert len(page) == 1


async def test_redrive_dead_letters_back(driver, project):
    """The whole path: dead-lettered by claim count, moved back, consumed once."""
    await post(driver, project, "q", 3)
    claim_id, _ = await claim(driver, project, "q", limit=3, dead_letter=TO_DLQ)
    await driver.claims.delete(project, "q", claim_id)
    assert await claim(driver, project, "q", dead_letter=TO_DLQ) == (None, [])
    assert (await driver.queues.stats(project, "dlq")).total == 3

    claim_id, claimed = await claim(driver, project, "dlq", limit=10, ttl=60, grace=0)
    moved = await driver.messages.move(project, "dlq", "q", [m.id for m in claimed], claim_id)
    assert len(moved) == 3
    assert (await driver.queues.stats(project, "dlq")).total == 0
    claim_id, again = await claim(driver, project, "q", limit=10, dead_letter=TO_DLQ)
    assert sorted(m.body["n"] for m in again) == [0, 1, 2]
    assert all(m.claim_count == 1 for m in again)
    await driver.messages.bulk_delete(project, "q", [m.id for m in again], [claim_id])
    assert (await driver.queues.stats(project, "q")).total == 0
