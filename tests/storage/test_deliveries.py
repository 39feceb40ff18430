"""The notification outbox: deliveries written by posts and by enqueue,
leased, retried, given up on, delivered; listing; subscriptions' end."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.helpers import GARBAGE_IDS, lease, list_deliveries, post, subscribe
from tidings import errors
from tidings.storage.base import Delivery, DeliveryKind, DeliveryStatus, GcResult
from tidings.storage.common.outbox import take_post_wrote_deliveries

HOOK = "http://example.com/hook"


def pairs(deliveries):
    """(subscription id, message id) of MESSAGE deliveries."""
    return sorted((d.subscription_id, d.payload["id"]) for d in deliveries)


@pytest.fixture
def other(project: str) -> str:
    return project + "-other"


# --- posts write deliveries -----------------------------------------------------


async def test_post_without_subscriptions_writes_no_delivery(driver, project):
    await post(driver, project, "q", 3)
    assert await lease(driver) == []
    assert await list_deliveries(driver, project, "q") == []


async def test_a_post_says_whether_it_wrote_a_delivery(driver, project):
    """The post writes the outbox in its own transaction or script, so it
    knows: without a delivery the notifier stage does not wake the delivery
    worker (storage/common/outbox.py)."""
    await post(driver, project, "q")
    assert take_post_wrote_deliveries() is False
    await subscribe(driver, project, "q", confirmed=False)
    await post(driver, project, "q")
    assert take_post_wrote_deliveries() is False
    await subscribe(driver, project, "q", "http://example.com/other")
    await post(driver, project, "q")
    assert take_post_wrote_deliveries() is True
    assert take_post_wrote_deliveries() is None  # read once


async def test_post_with_one_subscription_writes_one_delivery(driver, project, clock):
    subscription_id = await subscribe(driver, project, "q", HOOK, options={"k": "v"})
    clock.advance(3)
    body = {"event": "created", "n": [1, 2.5, None, "é"], "deep": {"x": True}}
    [message_id] = await post(driver, project, "q", body=body, ttl=300)

    [delivery] = await lease(driver)
    assert isinstance(delivery, Delivery)
    assert isinstance(delivery.id, str) and delivery.id
    assert delivery.project == project
    assert delivery.queue == "q"
    assert delivery.subscription_id == subscription_id
    assert delivery.subscriber == HOOK
    assert delivery.options == {"k": "v"}
    assert delivery.kind is DeliveryKind.MESSAGE
    assert delivery.payload == {"id": message_id, "body": body, "ttl": 300}
    assert delivery.attempts == 0
    assert delivery.created == clock.now
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_error is None


@pytest.mark.parametrize("body", [None, 0, "text", [1, 2], {"": ""}])
async def test_payload_keeps_any_json_body(driver, project, body):
    await subscribe(driver, project, "q")
    [message_id] = await post(driver, project, "q", body=body, ttl=120)
    [delivery] = await lease(driver)
    assert delivery.payload == {"id": message_id, "body": body, "ttl": 120}


async def test_batch_post_to_three_subscriptions_writes_one_delivery_per_pair(
    driver, project
):
    subscriptions = [await subscribe(driver, project, "q", f"{HOOK}/{i}") for i in range(3)]
    message_ids = await post(driver, project, "q", 5)
    leased = await lease(driver, limit=100)
    assert len(leased) == 15
    assert pairs(leased) == sorted((s, m) for s in subscriptions for m in message_ids)
    assert len({d.id for d in leased}) == 15
    bodies = {d.payload["id"]: d.payload["body"] for d in leased}
    assert bodies == {m: {"n": i} for i, m in enumerate(message_ids)}
    by_subscription = {d.subscription_id: d.subscriber for d in leased}
    assert by_subscription == {s: f"{HOOK}/{i}" for i, s in enumerate(subscriptions)}


async def test_each_post_writes_its_own_deliveries(driver, project):
    subscription_id = await subscribe(driver, project, "q")
    first = await post(driver, project, "q", 2)
    second = await post(driver, project, "q", 1)
    assert pairs(await lease(driver)) == sorted(
        (subscription_id, m) for m in first + second
    )


async def test_unconfirmed_subscriptions_get_no_deliveries(driver, project):
    await subscribe(driver, project, "q", f"{HOOK}/unconfirmed", confirmed=False)
    confirmed = await subscribe(driver, project, "q", f"{HOOK}/confirmed")
    message_ids = await post(driver, project, "q", 2)
    assert pairs(await lease(driver)) == sorted((confirmed, m) for m in message_ids)


async def test_a_confirmed_subscription_gets_deliveries_from_then_on(driver, project):
    subscription_id = await subscribe(driver, project, "q", confirmed=False)
    await post(driver, project, "q")
    await driver.subscriptions.confirm(project, "q", subscription_id, True)
    [message_id] = await post(driver, project, "q")
    assert pairs(await lease(driver)) == [(subscription_id, message_id)]


async def test_expired_subscriptions_get_no_deliveries(driver, project, clock):
    await subscribe(driver, project, "q", f"{HOOK}/short", ttl=60)
    live = await subscribe(driver, project, "q", f"{HOOK}/long", ttl=3600)
    clock.advance(60)
    [message_id] = await post(driver, project, "q")
    assert pairs(await lease(driver)) == [(live, message_id)]


async def test_deleted_subscriptions_get_no_deliveries(driver, project):
    subscription_id = await subscribe(driver, project, "q")
    await driver.subscriptions.delete(project, "q", subscription_id)
    await post(driver, project, "q")
    assert await lease(driver) == []


async def test_messages_posted_before_a_subscription_get_no_deliveries(driver, project):
    await post(driver, project, "q", 2)
    subscription_id = await subscribe(driver, project, "q")
    [message_id] = await post(driver, project, "q")
    assert pairs(await lease(driver)) == [(subscription_id, message_id)]


async def test_posts_notify_only_their_own_queue(driver, project, other):
    mine = await subscribe(driver, project, "q")
    elsewhere = await subscribe(driver, project, "r")
    theirs = await subscribe(driver, other, "q")
    [m1] = await post(driver, project, "q")
    [m2] = await post(driver, other, "q")
    [m3] = await post(driver, project, "r")
    await post(driver, project, "unwatched")
    assert pairs(await lease(driver)) == sorted([(mine, m1), (theirs, m2), (elsewhere, m3)])
    assert [(d.project, d.queue) for d in await list_deliveries(driver, project, "q")] == [
        (project, "q")
    ]


# --- enqueue --------------------------------------------------------------------


async def test_enqueued_confirmation_is_leasable(driver, project, clock):
    subscription_id = await subscribe(driver, project, "q", confirmed=False,
                                      options={"o": 1})
    payload = {"confirm_url": "https://tidings.example/v2/confirm?sig=abc", "n": 1}
    delivery_id = await driver.deliveries.enqueue(
        project, "q", subscription_id, DeliveryKind.CONFIRMATION, payload
    )
    assert isinstance(delivery_id, str) and delivery_id
    [delivery] = await lease(driver)
    assert delivery == Delivery(
        id=delivery_id,
        project=project,
        queue="q",
        subscription_id=subscription_id,
        subscriber=HOOK,
        options={"o": 1},
        kind=DeliveryKind.CONFIRMATION,
        payload=payload,
        attempts=0,
        created=clock.now,
        status=DeliveryStatus.PENDING,
        last_error=None,
    )


async def test_enqueue_for_an_unknown_subscription_raises(driver, project, other, clock):
    subscription_id = await subscribe(driver, project, "q", ttl=60)
    for where in ((project, "r"), (other, "q")):
        with pytest.raises(errors.SubscriptionDoesNotExist):
            await driver.deliveries.enqueue(
                *where, subscription_id, DeliveryKind.CONFIRMATION, {}
            )
    for garbage in GARBAGE_IDS:
        with pytest.raises(errors.SubscriptionDoesNotExist):
            await driver.deliveries.enqueue(project, "q", garbage, DeliveryKind.CONFIRMATION, {})
    clock.advance(60)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.deliveries.enqueue(project, "q", subscription_id,
                                        DeliveryKind.CONFIRMATION, {})
    assert await lease(driver) == []


# --- lease ----------------------------------------------------------------------


async def test_lease_takes_oldest_first_up_to_limit(driver, project, clock):
    await subscribe(driver, project, "q")
    message_ids = []
    for _ in range(2):
        message_ids += await post(driver, project, "q", 2)
        clock.advance(1)
    first = await lease(driver, limit=3)
    assert [d.payload["id"] for d in first] == message_ids[:3]
    second = await lease(driver, limit=3)
    assert [d.payload["id"] for d in second] == message_ids[3:]
    assert await lease(driver, limit=3) == []


async def test_lease_of_nothing(driver):
    assert await lease(driver) == []


async def test_a_lease_expires_and_the_delivery_is_leased_again(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q", 2)
    first = await lease(driver, lease_seconds=30)
    assert len(first) == 2
    clock.advance(29.5)
    assert await lease(driver) == []
    clock.advance(0.5)
    again = await lease(driver, lease_seconds=30)
    assert [d.id for d in again] == [d.id for d in first]
    assert [d.attempts for d in again] == [0, 0]  # an expired lease is no attempt
    assert await lease(driver) == []


async def test_concurrent_leases_never_share_a_delivery(driver, project):
    for i in range(3):
        await subscribe(driver, project, "q", f"{HOOK}/{i}")
    await post(driver, project, "q", 5)
    results = await asyncio.gather(*(lease(driver, limit=4) for _ in range(6)))
    leased = [d.id for batch in results for d in batch]
    assert len(leased) == 15
    assert len(set(leased)) == 15


async def test_lease_skips_deliveries_of_expired_subscriptions(driver, project, clock):
    await subscribe(driver, project, "q", f"{HOOK}/short", ttl=60)
    live = await subscribe(driver, project, "q", f"{HOOK}/long", ttl=3600)
    message_ids = await post(driver, project, "q", 2)
    clock.advance(60)
    assert pairs(await lease(driver)) == sorted((live, m) for m in message_ids)


async def test_lease_carries_the_subscription_identity(driver, project):
    subscription_id = await subscribe(driver, project, "q", "mailto:a@example.com",
                                      options={"subject": "hi"})
    await post(driver, project, "q")
    [delivery] = await lease(driver)
    assert (delivery.subscription_id, delivery.subscriber, delivery.options) == (
        subscription_id, "mailto:a@example.com", {"subject": "hi"}
    )


# --- delivered, retry, dead -----------------------------------------------------


async def test_delivered_removes_the_delivery(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q", 2)
    done, kept = await lease(driver)
    await driver.deliveries.delivered(done.id)
    await driver.deliveries.delivered(done.id)  # twice: fine
    assert [d.id for d in await list_deliveries(driver, project, "q")] == [kept.id]
    clock.advance(30)
    assert [d.id for d in await lease(driver)] == [kept.id]


async def test_retry_makes_the_delivery_due_again_at_the_given_time(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q")
    [delivery] = await lease(driver, lease_seconds=300)
    await driver.deliveries.retry(delivery.id, at=clock.now + 10, error="HTTP 503")
    clock.advance(9)
    assert await lease(driver) == []
    clock.advance(1)
    [again] = await lease(driver, lease_seconds=300)
    assert again.id == delivery.id
    assert again.attempts == 1
    assert again.last_error == "HTTP 503"
    assert again.status is DeliveryStatus.PENDING
    assert again.payload == delivery.payload
    assert again.created == delivery.created
    await driver.deliveries.retry(again.id, at=clock.now + 10, error="timeout")
    clock.advance(10)
    [third] = await lease(driver)
    assert (third.attempts, third.last_error) == (2, "timeout")


async def test_retry_releases_the_lease(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q")
    [delivery] = await lease(driver, lease_seconds=300)
    await driver.deliveries.retry(delivery.id, at=clock.now, error="x")
    assert [d.id for d in await lease(driver)] == [delivery.id]


async def test_retried_deliveries_take_their_turn_by_due_time(driver, project, clock):
    await subscribe(driver, project, "q")
    first, second = await post(driver, project, "q", 2)
    a, b = await lease(driver)
    await driver.deliveries.retry(a.id, at=clock.now + 20, error="x")
    await driver.deliveries.retry(b.id, at=clock.now + 10, error="x")
    clock.advance(20)
    assert [d.payload["id"] for d in await lease(driver)] == [second, first]


async def test_retried_delivery_is_pending_and_listed(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q")
    [delivery] = await lease(driver)
    await driver.deliveries.retry(delivery.id, at=clock.now + 60, error="refused")
    [listed] = await list_deliveries(driver, project, "q")
    assert (listed.id, listed.status, listed.attempts, listed.last_error) == (
        delivery.id, DeliveryStatus.PENDING, 1, "refused"
    )


async def test_dead_delivery_is_never_leased_and_is_listed(driver, project, clock):
    subscription_id = await subscribe(driver, project, "q")
    [message_id] = await post(driver, project, "q", body={"b": 1}, ttl=500)
    [delivery] = await lease(driver)
    await driver.deliveries.retry(delivery.id, at=clock.now, error="first")
    [delivery] = await lease(driver)
    await driver.deliveries.dead(delivery.id, error="HTTP 410 Gone")
    clock.advance(600)  # the subscription lives an hour
    assert await lease(driver) == []
    assert await list_deliveries(driver, project, "q") == []
    [dead] = await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD)
    assert dead.id == delivery.id
    assert dead.status is DeliveryStatus.DEAD
    assert dead.attempts == 2
    assert dead.last_error == "HTTP 410 Gone"
    assert dead.subscription_id == subscription_id
    assert dead.kind is DeliveryKind.MESSAGE
    assert dead.payload == {"id": message_id, "body": {"b": 1}, "ttl": 500}


async def test_updates_of_unknown_deliveries_are_ignored(driver, project, clock):
    await subscribe(driver, project, "q")
    await post(driver, project, "q")
    [delivery] = await lease(driver)
    await driver.deliveries.delivered(delivery.id)
    # A worker whose lease expired reports late: nothing comes back.
    await driver.deliveries.retry(delivery.id, at=clock.now, error="late")
    await driver.deliveries.dead(delivery.id, error="late")
    for garbage in GARBAGE_IDS:
        await driver.deliveries.delivered(garbage)
        await driver.deliveries.retry(garbage, at=clock.now, error="x")
        await driver.deliveries.dead(garbage, error="x")
    assert await lease(driver) == []
    assert await list_deliveries(driver, project, "q") == []
    assert await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD) == []


# --- list -----------------------------------------------------------------------


async def test_list_pages_oldest_first(driver, project, clock):
    await subscribe(driver, project, "q", f"{HOOK}/a")
    await subscribe(driver, project, "q", f"{HOOK}/b")
    for _ in range(3):
        await post(driver, project, "q", 1)
        clock.advance(1)
    everything = await list_deliveries(driver, project, "q")
    assert len(everything) == 6
    created = [d.created for d in everything]
    assert created == sorted(created)
    seen, marker = [], None
    for _ in range(10):
        page = await list_deliveries(driver, project, "q", marker=marker, limit=4)
        if not page:
            break
        assert len(page) <= 4
        seen += [d.id for d in page]
        marker = page[-1].id
    assert seen == [d.id for d in everything]


async def test_list_by_status_and_subscription(driver, project):
    a = await subscribe(driver, project, "q", f"{HOOK}/a")
    b = await subscribe(driver, project, "q", f"{HOOK}/b")
    await post(driver, project, "q", 2)
    leased = await lease(driver)
    doomed = [d for d in leased if d.subscription_id == a][:1] + [
        d for d in leased if d.subscription_id == b
    ][:1]
    for d in doomed:
        await driver.deliveries.dead(d.id, error="no")
    dead = await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD)
    assert sorted(d.id for d in dead) == sorted(d.id for d in doomed)
    [dead_of_a] = await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD,
                                        subscription_id=a)
    assert dead_of_a.id == doomed[0].id
    pending_of_b = await list_deliveries(driver, project, "q", subscription_id=b)
    assert [d.subscription_id for d in pending_of_b] == [b]
    assert len(await list_deliveries(driver, project, "q")) == 2
    assert await list_deliveries(driver, project, "q", subscription_id="nope") == []


async def test_list_is_per_queue_and_project(driver, project, other):
    await subscribe(driver, project, "q")
    foreign = await subscribe(driver, other, "q")
    elsewhere = await subscribe(driver, project, "r")
    await post(driver, project, "q", 1)
    await post(driver, other, "q", 2)
    await post(driver, project, "r", 3)
    assert len(await list_deliveries(driver, project, "q")) == 1
    assert len(await list_deliveries(driver, other, "q")) == 2
    assert len(await list_deliveries(driver, project, "r")) == 3
    assert await list_deliveries(driver, project, "missing") == []
    # A subscription of another queue lists nothing here.
    assert await list_deliveries(driver, project, "q", subscription_id=foreign) == []
    assert await list_deliveries(driver, project, "q", subscription_id=elsewhere) == []


# --- the end of a subscription --------------------------------------------------


async def test_deleting_a_subscription_drops_its_deliveries(driver, project, clock):
    doomed = await subscribe(driver, project, "q", f"{HOOK}/doomed")
    kept = await subscribe(driver, project, "q", f"{HOOK}/kept")
    await post(driver, project, "q", 2)
    await driver.deliveries.enqueue(project, "q", doomed, DeliveryKind.CONFIRMATION, {"c": 1})
    leased = await lease(driver, limit=1)
    await driver.deliveries.dead(leased[0].id, error="x")
    clock.advance(30)

    await driver.subscriptions.delete(project, "q", doomed)

    remaining = await list_deliveries(driver, project, "q")
    remaining += await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD)
    assert {d.subscription_id for d in remaining} == {kept}
    assert {d.subscription_id for d in await lease(driver)} == {kept}


async def test_gc_removes_deliveries_of_expired_subscriptions(driver, project, clock):
    short = await subscribe(driver, project, "q", f"{HOOK}/short", ttl=60)
    long = await subscribe(driver, project, "q", f"{HOOK}/long", ttl=3600)
    await post(driver, project, "q", 2, ttl=3600)
    leased = await lease(driver)
    for d in leased:
        if d.subscription_id == short:
            await driver.deliveries.dead(d.id, error="x")
    clock.advance(60)
    # The short one with its deliveries: one per message, dead or not.
    assert await driver.gc() == GcResult(subscriptions=1, deliveries=2)
    assert await driver.gc() == GcResult()
    dead = await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD)
    assert dead == []
    pending = await list_deliveries(driver, project, "q")
    assert {d.subscription_id for d in pending} == {long}
    assert len(pending) == 2


# --- SQLite: retention of dead deliveries (not part of the interface) ------------


async def test_sqlite_gc_drops_dead_deliveries_after_the_retention(tmp_path, clock, project):
    from tests.storage.conftest import sqlite_driver

    async with sqlite_driver(tmp_path, clock) as driver:
        await subscribe(driver, project, "q", ttl=100 * 86400)
        await post(driver, project, "q", 2, ttl=100 * 86400)
        first, second = await lease(driver)
        await driver.deliveries.dead(first.id, error="x")
        clock.advance(86400)
        await driver.deliveries.dead(second.id, error="y")
        clock.advance(driver.dead_retention - 86400)
        assert await driver.gc() == GcResult(deliveries=1)
        assert await driver.gc() == GcResult()
        dead = await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD)
        assert [d.id for d in dead] == [second.id]
        clock.advance(86400)
        assert await driver.gc() == GcResult(deliveries=1)
        assert await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD) == []
