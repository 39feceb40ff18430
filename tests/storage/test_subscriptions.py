"""Subscriptions: create, get, find, list, update, confirm, delete, expiry,
and isolation between projects and queues."""

from __future__ import annotations

import pytest

from tests.storage.helpers import GARBAGE_IDS, lease, list_deliveries, post, subscribe
from tidings import errors
from tidings.storage.base import DeliveryStatus, GcResult, NewSubscription, Subscription

HOOK = "http://example.com/hook"
OTHER_HOOK = "https://example.org/other"
MAIL = "mailto:someone@example.com"


async def create(driver, project, queue, subscriber=HOOK, *, ttl=3600, options=None,
                 confirmed=True):
    return await driver.subscriptions.create(
        project,
        queue,
        NewSubscription(subscriber=subscriber, ttl=ttl, options=options or {},
                        confirmed=confirmed),
    )


async def listed_ids(driver, project, queue, *, marker=None, limit=100):
    page = await driver.subscriptions.list(project, queue, marker=marker, limit=limit)
    return [s.id for s in page]


@pytest.fixture
def other(project: str) -> str:
    return project + "-other"


# --- create and get -------------------------------------------------------------


async def test_create_returns_an_id_and_get_returns_the_subscription(driver, project):
    options = {"a": 1, "nested": {"list": [1, "two", None]}, "flag": True}
    subscription_id = await create(driver, project, "q", HOOK, ttl=600, options=options)
    assert isinstance(subscription_id, str) and subscription_id
    got = await driver.subscriptions.get(project, "q", subscription_id)
    assert isinstance(got, Subscription)
    assert got.id == subscription_id
    assert got.queue == "q"
    assert got.subscriber == HOOK
    assert got.ttl == 600
    assert got.age == 0
    assert got.options == options
    assert got.confirmed is True


async def test_create_unconfirmed(driver, project):
    subscription_id = await create(driver, project, "q", confirmed=False)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).confirmed is False


async def test_age_follows_the_clock(driver, project, clock):
    subscription_id = await create(driver, project, "q", ttl=600)
    clock.advance(42)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).age == 42


async def test_ids_are_distinct(driver, project):
    ids = [await create(driver, project, "q", f"{HOOK}/{i}") for i in range(5)]
    ids += [await create(driver, project, "r", f"{HOOK}/{i}") for i in range(5)]
    assert len(set(ids)) == 10


async def test_duplicate_subscriber_on_a_queue_returns_none(driver, project):
    first = await create(driver, project, "q", HOOK)
    assert first is not None
    assert await create(driver, project, "q", HOOK, ttl=99, options={"x": 1}) is None
    # The original is untouched.
    got = await driver.subscriptions.get(project, "q", first)
    assert (got.ttl, got.options) == (3600, {})
    assert await listed_ids(driver, project, "q") == [first]


async def test_same_subscriber_on_another_queue_or_project_is_not_a_duplicate(
    driver, project, other
):
    ids = [
        await create(driver, project, "q", HOOK),
        await create(driver, project, "r", HOOK),
        await create(driver, other, "q", HOOK),
    ]
    assert None not in ids
    assert len(set(ids)) == 3


async def test_a_subscription_needs_no_existing_queue(driver, project):
    # Whether a queue must exist is the operation layer's business.
    subscription_id = await create(driver, project, "nowhere")
    assert (await driver.subscriptions.get(project, "nowhere", subscription_id)).queue == (
        "nowhere"
    )


@pytest.mark.parametrize("garbage", GARBAGE_IDS)
async def test_get_of_an_unknown_id_raises(driver, project, garbage):
    await create(driver, project, "q")
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.get(project, "q", garbage)


async def test_ids_do_not_resolve_in_another_queue_or_project(driver, project, other):
    subscription_id = await create(driver, project, "q")
    await create(driver, project, "r")
    await create(driver, other, "q")
    for where in ((project, "r"), (other, "q"), (project, "missing")):
        with pytest.raises(errors.SubscriptionDoesNotExist):
            await driver.subscriptions.get(*where, subscription_id)
        with pytest.raises(errors.SubscriptionDoesNotExist):
            await driver.subscriptions.update(*where, subscription_id, ttl=10)
        with pytest.raises(errors.SubscriptionDoesNotExist):
            await driver.subscriptions.confirm(*where, subscription_id, False)
        await driver.subscriptions.delete(*where, subscription_id)  # idempotent, no effect
    got = await driver.subscriptions.get(project, "q", subscription_id)
    assert (got.ttl, got.confirmed) == (3600, True)


# --- find -----------------------------------------------------------------------


async def test_find_by_subscriber(driver, project, other):
    hook = await create(driver, project, "q", HOOK)
    mail = await create(driver, project, "q", MAIL)
    assert (await driver.subscriptions.find(project, "q", HOOK)).id == hook
    found = await driver.subscriptions.find(project, "q", MAIL)
    assert (found.id, found.subscriber, found.queue) == (mail, MAIL, "q")
    assert await driver.subscriptions.find(project, "q", OTHER_HOOK) is None
    assert await driver.subscriptions.find(project, "r", HOOK) is None
    assert await driver.subscriptions.find(other, "q", HOOK) is None


# --- expiry ---------------------------------------------------------------------


async def test_expired_subscription_is_gone_everywhere(driver, project, clock):
    subscription_id = await create(driver, project, "q", ttl=60)
    clock.advance(59)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).age == 59
    clock.advance(1)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.get(project, "q", subscription_id)
    assert await driver.subscriptions.find(project, "q", HOOK) is None
    assert await listed_ids(driver, project, "q") == []
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.update(project, "q", subscription_id, ttl=600)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.confirm(project, "q", subscription_id, True)
    await driver.subscriptions.delete(project, "q", subscription_id)


async def test_an_expired_subscriber_may_subscribe_again(driver, project, clock):
    old = await create(driver, project, "q", ttl=60)
    clock.advance(60)
    new = await create(driver, project, "q", ttl=60)
    assert new is not None and new != old
    assert (await driver.subscriptions.find(project, "q", HOOK)).id == new
    assert await listed_ids(driver, project, "q") == [new]


async def test_expired_subscriptions_are_removed_by_gc(driver, project, clock):
    await create(driver, project, "q", ttl=60)
    live = await create(driver, project, "q", OTHER_HOOK, ttl=3600)
    clock.advance(60)
    assert await driver.gc() == GcResult(subscriptions=1)
    assert await driver.gc() == GcResult()
    assert await listed_ids(driver, project, "q") == [live]


# --- list -----------------------------------------------------------------------


async def test_list_in_creation_order_with_paging(driver, project):
    # Created within one clock tick: order is the order of creation.
    created = [await create(driver, project, "q", f"{HOOK}/{i}") for i in range(7)]
    assert await listed_ids(driver, project, "q") == created
    seen, marker = [], None
    for _ in range(10):
        page = await listed_ids(driver, project, "q", marker=marker, limit=3)
        if not page:
            break
        assert len(page) <= 3
        seen += page
        marker = page[-1]
    assert seen == created


async def test_list_returns_whole_subscriptions(driver, project, clock):
    created = await create(driver, project, "q", MAIL, ttl=900, options={"from": "a@b.c"},
                           confirmed=False)
    clock.advance(5)
    [listed] = await driver.subscriptions.list(project, "q", marker=None, limit=10)
    assert listed == Subscription(
        id=created, queue="q", subscriber=MAIL, ttl=900, age=5,
        options={"from": "a@b.c"}, confirmed=False,
    )
    assert listed == await driver.subscriptions.get(project, "q", created)


async def test_list_skips_expired_and_deleted(driver, project, clock):
    short = await create(driver, project, "q", f"{HOOK}/short", ttl=60)
    kept = await create(driver, project, "q", f"{HOOK}/kept", ttl=3600)
    gone = await create(driver, project, "q", f"{HOOK}/gone", ttl=3600)
    last = await create(driver, project, "q", f"{HOOK}/last", ttl=3600)
    await driver.subscriptions.delete(project, "q", gone)
    clock.advance(60)
    assert await listed_ids(driver, project, "q") == [kept, last]
    # A marker that no longer resolves still marks a place.
    assert await listed_ids(driver, project, "q", marker=short) == [kept, last]
    assert await listed_ids(driver, project, "q", marker=gone) == [last]


async def test_list_is_per_queue_and_project(driver, project, other):
    mine = [await create(driver, project, "q", f"{HOOK}/{i}") for i in range(2)]
    theirs = await create(driver, other, "q", HOOK)
    elsewhere = await create(driver, project, "r", HOOK)
    assert await listed_ids(driver, project, "q") == mine
    assert await listed_ids(driver, other, "q") == [theirs]
    assert await listed_ids(driver, project, "r") == [elsewhere]
    assert await listed_ids(driver, project, "empty") == []


# --- update ---------------------------------------------------------------------


async def test_update_changes_only_the_given_fields(driver, project, clock):
    subscription_id = await create(driver, project, "q", HOOK, ttl=600, options={"a": 1})
    clock.advance(10)
    await driver.subscriptions.update(project, "q", subscription_id, options={"b": 2})
    got = await driver.subscriptions.get(project, "q", subscription_id)
    assert (got.subscriber, got.ttl, got.age, got.options) == (HOOK, 600, 10, {"b": 2})

    await driver.subscriptions.update(project, "q", subscription_id, subscriber=OTHER_HOOK)
    got = await driver.subscriptions.get(project, "q", subscription_id)
    assert (got.subscriber, got.ttl, got.age, got.options) == (OTHER_HOOK, 600, 10, {"b": 2})
    assert await driver.subscriptions.find(project, "q", HOOK) is None
    assert (await driver.subscriptions.find(project, "q", OTHER_HOOK)).id == subscription_id
    # The old subscriber is free again.
    assert await create(driver, project, "q", HOOK) is not None

    await driver.subscriptions.update(project, "q", subscription_id)  # nothing to change
    assert await driver.subscriptions.get(project, "q", subscription_id) == got


async def test_update_with_a_ttl_restarts_the_lifetime(driver, project, clock):
    subscription_id = await create(driver, project, "q", ttl=60)
    clock.advance(50)
    await driver.subscriptions.update(project, "q", subscription_id, ttl=60)
    got = await driver.subscriptions.get(project, "q", subscription_id)
    assert (got.ttl, got.age) == (60, 0)
    clock.advance(50)  # 100 s after creation, 50 s after the update
    assert (await driver.subscriptions.get(project, "q", subscription_id)).age == 50
    clock.advance(10)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.get(project, "q", subscription_id)


async def test_update_to_a_taken_subscriber_conflicts(driver, project):
    first = await create(driver, project, "q", HOOK)
    second = await create(driver, project, "q", OTHER_HOOK)
    with pytest.raises(errors.Conflict):
        await driver.subscriptions.update(
            project, "q", second, subscriber=HOOK, options={"changed": True}
        )
    got = await driver.subscriptions.get(project, "q", second)
    assert (got.subscriber, got.options) == (OTHER_HOOK, {})  # nothing changed
    assert (await driver.subscriptions.find(project, "q", HOOK)).id == first
    # Its own subscriber is no conflict.
    await driver.subscriptions.update(project, "q", first, subscriber=HOOK, ttl=100)
    assert (await driver.subscriptions.get(project, "q", first)).ttl == 100


async def test_update_to_a_subscriber_taken_elsewhere_or_by_an_expired_one(
    driver, project, other, clock
):
    await create(driver, project, "r", HOOK)
    await create(driver, other, "q", HOOK)
    await create(driver, project, "q", MAIL, ttl=60)
    subscription_id = await create(driver, project, "q", OTHER_HOOK, ttl=3600)
    await driver.subscriptions.update(project, "q", subscription_id, subscriber=HOOK)
    clock.advance(60)
    await driver.subscriptions.update(project, "q", subscription_id, subscriber=MAIL)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).subscriber == MAIL


@pytest.mark.parametrize("garbage", GARBAGE_IDS)
async def test_update_of_an_unknown_id_raises(driver, project, garbage):
    await create(driver, project, "q")
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.update(project, "q", garbage, ttl=10)


# --- confirm --------------------------------------------------------------------


async def test_confirm_and_unconfirm(driver, project):
    subscription_id = await create(driver, project, "q", confirmed=False)
    await driver.subscriptions.confirm(project, "q", subscription_id, True)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).confirmed is True
    await driver.subscriptions.confirm(project, "q", subscription_id, True)  # again: fine
    await driver.subscriptions.confirm(project, "q", subscription_id, False)
    assert (await driver.subscriptions.get(project, "q", subscription_id)).confirmed is False


async def test_confirm_of_an_unknown_id_raises(driver, project):
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.confirm(project, "q", "nope", True)


# --- delete ---------------------------------------------------------------------


async def test_delete_is_idempotent(driver, project):
    subscription_id = await create(driver, project, "q")
    kept = await create(driver, project, "q", OTHER_HOOK)
    await driver.subscriptions.delete(project, "q", subscription_id)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.get(project, "q", subscription_id)
    await driver.subscriptions.delete(project, "q", subscription_id)
    for garbage in GARBAGE_IDS:
        await driver.subscriptions.delete(project, "q", garbage)
    assert await listed_ids(driver, project, "q") == [kept]
    # The subscriber may subscribe again.
    assert await create(driver, project, "q") not in (None, subscription_id)


async def test_purge_deletes_every_subscription_of_the_queue_only(driver, project, other):
    for i in range(3):
        await create(driver, project, "q", f"{HOOK}/{i}")
    kept = await create(driver, project, "q2")
    elsewhere = await create(driver, other, "q")
    await driver.subscriptions.purge(project, "q")
    assert await listed_ids(driver, project, "q") == []
    assert await listed_ids(driver, project, "q2") == [kept]
    assert await listed_ids(driver, other, "q") == [elsewhere]
    await driver.subscriptions.purge(project, "q")  # nothing left: still fine
    assert await create(driver, project, "q") is not None  # the queue takes new ones


# --- queue deletion -------------------------------------------------------------


async def test_deleting_a_queue_deletes_its_subscriptions_and_deliveries(
    driver, project, other
):
    doomed = await subscribe(driver, project, "q", HOOK)
    kept_here = await subscribe(driver, project, "r", HOOK)
    kept_there = await subscribe(driver, other, "q", HOOK)
    await post(driver, project, "q", 2)
    await post(driver, project, "r", 1)
    await post(driver, other, "q", 1)
    [dead] = await list_deliveries(driver, project, "q", limit=1)
    await driver.deliveries.dead(dead.id, error="gone")

    await driver.queues.delete(project, "q")

    assert await listed_ids(driver, project, "q") == []
    with pytest.raises(errors.SubscriptionDoesNotExist):
        await driver.subscriptions.get(project, "q", doomed)
    assert await list_deliveries(driver, project, "q") == []
    assert await list_deliveries(driver, project, "q", status=DeliveryStatus.DEAD) == []
    leased = await lease(driver)
    assert sorted(d.subscription_id for d in leased) == sorted([kept_here, kept_there])
    # A queue of the same name starts without subscriptions.
    await post(driver, project, "q", 1)
    assert await lease(driver) == []
