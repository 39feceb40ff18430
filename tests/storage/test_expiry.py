"""Expiry by the clock alone: nothing expired is ever returned, gc or not."""

from __future__ import annotations

import pytest

from tests.storage.helpers import claim, list_ids, post
from tidings import errors


async def post_mixed(driver, project, clock):
    """Two short-lived messages around a long-lived one; then time passes
    until only the long-lived one is alive. Returns (expired, alive)."""
    first = await post(driver, project, "q", ttl=60)
    alive = await post(driver, project, "q", ttl=3600)
    last = await post(driver, project, "q", ttl=60)
    clock.advance(60)
    return first + last, alive


async def test_message_is_alive_until_its_ttl(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=60)
    clock.advance(59)
    message = await driver.messages.get(project, "q", message_id)
    assert (message.ttl, message.age) == (60, 59)
    clock.advance(1)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)


async def test_expired_messages_are_not_listed(driver, project, clock):
    _, alive = await post_mixed(driver, project, clock)
    assert await list_ids(driver, project, "q") == alive
    assert await list_ids(driver, project, "q", include_claimed=True, include_delayed=True) == alive


async def test_expired_messages_are_not_returned_by_get(driver, project, clock):
    expired, alive = await post_mixed(driver, project, clock)
    for message_id in expired:
        with pytest.raises(errors.MessageDoesNotExist):
            await driver.messages.get(project, "q", message_id)
    assert (await driver.messages.get(project, "q", alive[0])).id == alive[0]


async def test_expired_messages_are_not_returned_by_bulk_get(driver, project, clock):
    expired, alive = await post_mixed(driver, project, clock)
    found = await driver.messages.bulk_get(project, "q", expired + alive)
    assert [m.id for m in found] == alive


async def test_expired_messages_are_not_claimed(driver, project, clock):
    _, alive = await post_mixed(driver, project, clock)
    _, claimed = await claim(driver, project, "q")
    assert [m.id for m in claimed] == alive


async def test_expired_messages_only_yield_an_empty_claim(driver, project, clock):
    await post(driver, project, "q", 3, ttl=60)
    clock.advance(60)
    assert await claim(driver, project, "q") == (None, [])


async def test_expired_messages_are_not_popped(driver, project, clock):
    _, alive = await post_mixed(driver, project, clock)
    assert [m.id for m in await driver.messages.pop(project, "q", 10)] == alive


async def test_expired_messages_are_not_counted_in_stats(driver, project, clock):
    _, alive = await post_mixed(driver, project, clock)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free, stats.total) == (0, 1, 1)
    assert stats.oldest.id == alive[0]
    assert stats.newest.id == alive[0]


async def test_stats_of_queue_with_only_expired_messages_are_zeros(driver, project, clock):
    await post(driver, project, "q", 3, ttl=60)
    clock.advance(60)
    stats = await driver.queues.stats(project, "q")
    assert stats.total == 0
    assert stats.oldest is None and stats.newest is None


async def test_delete_of_expired_message_is_a_no_op(driver, project, clock):
    expired, alive = await post_mixed(driver, project, clock)
    await driver.messages.delete(project, "q", expired[0], None)
    await driver.messages.bulk_delete(project, "q", expired, None)
    assert await list_ids(driver, project, "q") == alive


async def test_claimed_message_expires_after_claim_expiry_plus_grace(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=60)
    await claim(driver, project, "q", ttl=300, grace=60)
    clock.advance(360)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)
    assert await list_ids(driver, project, "q", include_claimed=True) == []
    assert await claim(driver, project, "q") == (None, [])
    assert (await driver.queues.stats(project, "q")).total == 0


async def test_expired_claim_is_not_returned(driver, project, clock):
    await post(driver, project, "q", 2)
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)


async def test_expired_claim_no_longer_shows_on_messages(driver, project, clock):
    posted = await post(driver, project, "q", 2)
    await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    for message in await driver.messages.bulk_get(project, "q", posted):
        assert message.claim_id is None
    page, _ = await driver.messages.list(
        project, "q", marker=None, limit=10, client_id=None, echo=True,
        include_claimed=True, include_delayed=False,
    )
    assert [m.claim_id for m in page] == [None, None]


async def test_expired_claim_id_cannot_delete_messages(driver, project, clock):
    [message_id] = await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    with pytest.raises(errors.ClaimNotValid):
        await driver.messages.delete(project, "q", message_id, claim_id)
    assert (await driver.messages.get(project, "q", message_id)).id == message_id


async def test_message_of_expired_claim_can_be_deleted_by_new_claim(driver, project, clock):
    [message_id] = await post(driver, project, "q")
    old, _ = await claim(driver, project, "q", ttl=60)
    clock.advance(60)
    new, _ = await claim(driver, project, "q", ttl=60)
    with pytest.raises(errors.ClaimDoesNotExist):
        await driver.messages.delete(project, "q", message_id, old)
    await driver.messages.delete(project, "q", message_id, new)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)
