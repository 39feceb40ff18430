"""A subscription that must be confirmed and its confirmation request are
written together (SubscriptionController.create with ``confirmation``): a
crash can leave neither or both, never an unconfirmed subscription that
nobody was asked to confirm."""

from __future__ import annotations

import pytest

from tests.storage.helpers import lease, list_deliveries, subscribe
from tidings import errors
from tidings.storage.base import DeliveryKind, NewSubscription

HOOK = "http://example.com/hook"


def unconfirmed(subscriber: str = HOOK) -> NewSubscription:
    return NewSubscription(subscriber=subscriber, ttl=3600, options={"k": 1}, confirmed=False)


async def test_create_enqueues_the_confirmation_built_from_the_new_id(driver, project, clock):
    asked: list[str] = []

    def confirmation(subscription_id: str) -> dict:
        asked.append(subscription_id)
        return {"Message_Type": "SubscriptionConfirmation", "subscription_id": subscription_id,
                "URL-Paths": f"/v2/queues/q/subscriptions/{subscription_id}/confirm"}

    subscription_id = await driver.subscriptions.create(project, "q", unconfirmed(),
                                                         confirmation)
    assert asked == [subscription_id]
    assert (await driver.subscriptions.get(project, "q", subscription_id)).confirmed is False
    [delivery] = await lease(driver)
    assert delivery.kind is DeliveryKind.CONFIRMATION
    assert delivery.subscription_id == subscription_id
    assert delivery.subscriber == HOOK
    assert delivery.project == project and delivery.queue == "q"
    assert delivery.payload == confirmation(subscription_id)
    assert delivery.created == clock.now
    # A confirmation request is a delivery like any other: listed, removed once delivered.
    assert [d.id for d in await list_deliveries(driver, project, "q")] == [delivery.id]
    await driver.deliveries.delivered(delivery.id)
    assert await list_deliveries(driver, project, "q") == []


async def test_a_duplicate_subscriber_enqueues_nothing(driver, project):
    await subscribe(driver, project, "q", HOOK)
    assert await lease(driver) == []
    again = await driver.subscriptions.create(project, "q", unconfirmed(),
                                              lambda sid: {"subscription_id": sid})
    assert again is None
    assert await lease(driver) == []


async def test_a_failing_payload_leaves_no_subscription(driver, project):
    def broken(subscription_id: str) -> dict:
        raise errors.ServiceUnavailable("No key to sign confirmation URLs with.")

    with pytest.raises(errors.ServiceUnavailable):
        await driver.subscriptions.create(project, "q", unconfirmed(), broken)
    assert await driver.subscriptions.find(project, "q", HOOK) is None
    assert await driver.subscriptions.list(project, "q", marker=None, limit=10) == []
    assert await lease(driver) == []
    # Nothing half-made stands in the way of the next attempt.
    subscription_id = await driver.subscriptions.create(
        project, "q", unconfirmed(), lambda sid: {"subscription_id": sid})
    assert subscription_id is not None
    [delivery] = await lease(driver)
    assert delivery.payload == {"subscription_id": subscription_id}


async def test_without_confirmation_nothing_is_enqueued(driver, project):
    subscription_id = await driver.subscriptions.create(project, "q", unconfirmed())
    assert subscription_id is not None
    assert await lease(driver) == []


async def test_ids_keep_creation_order_with_confirmations(driver, project):
    first = await driver.subscriptions.create(project, "q", unconfirmed("http://a.example/"),
                                              lambda sid: {"n": 1})
    second = await subscribe(driver, project, "q", "http://b.example/")
    third = await driver.subscriptions.create(project, "q", unconfirmed("http://c.example/"),
                                              lambda sid: {"n": 3})
    listed = await driver.subscriptions.list(project, "q", marker=None, limit=10)
    assert [s.id for s in listed] == [first, second, third]
    page = await driver.subscriptions.list(project, "q", marker=first, limit=10)
    assert [s.id for s in page] == [second, third]
