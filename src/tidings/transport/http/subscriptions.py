"""Falcon resources of subscriptions, on queues and on topics alike.

``SubscriptionOps`` names the operation functions of one kind of parent:
``QUEUE_OPS`` (api/subscriptions.py, api/deliveries.py) or ``TOPIC_OPS``
(api/topics.py). The parent's name comes from the route: ``queue_name`` or
``topic_name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from tidings import errors
from tidings.api import deliveries, subscriptions, topics
from tidings.api.context import Service
from tidings.transport.http.request import context, int_param, json_response, read_body, str_param
from tidings.transport.http.resources import SMALL_BODY, Op, Req, Resp, parent


@dataclass(frozen=True)
class SubscriptionOps:
    create: Op
    list: Op
    get: Op
    update: Op
    delete: Op
    confirm: Op
    deliveries: Op


QUEUE_OPS = SubscriptionOps(
    create=subscriptions.create, list=subscriptions.list_subscriptions, get=subscriptions.get,
    update=subscriptions.update, delete=subscriptions.delete, confirm=subscriptions.confirm,
    deliveries=deliveries.list_deliveries,
)
TOPIC_OPS = SubscriptionOps(
    create=topics.create_subscription, list=topics.list_subscriptions,
    get=topics.get_subscription, update=topics.update_subscription,
    delete=topics.delete_subscription, confirm=topics.confirm_subscription,
    deliveries=topics.list_deliveries,
)


class _Resource:
    def __init__(self, service: Service, ops: SubscriptionOps = QUEUE_OPS) -> None:
        self.service = service
        self.ops = ops


class SubscriptionCollection(_Resource):
    async def on_post(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "subscription")
        if document is None:
            raise errors.ValidationFailed("No subscription to create.")
        result = await self.ops.create(ctx, parent(params), document, base_url=req.prefix)
        resp.location = req.path
        json_response(resp, result, falcon.HTTP_201)

    async def on_get(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        result = await self.ops.list(ctx, parent(params), marker=str_param(req, "marker"),
                                     limit=int_param(req, "limit"))
        json_response(resp, result)


class SubscriptionItem(_Resource):
    async def on_get(self, req: Req, resp: Resp, subscription_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        json_response(resp, await self.ops.get(ctx, parent(params), subscription_id))

    async def on_patch(self, req: Req, resp: Resp, subscription_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "subscription update")
        if document is None:
            raise errors.ValidationFailed("No subscription fields to update.")
        await self.ops.update(ctx, parent(params), subscription_id, document,
                              base_url=req.prefix)
        resp.status = falcon.HTTP_204
        resp.location = req.path  # as Zaqar

    async def on_delete(self, req: Req, resp: Resp, subscription_id: str, **params: str
                        ) -> None:
        await self.ops.delete(context(req, self.service), parent(params), subscription_id)
        resp.status = falcon.HTTP_204


class SubscriptionConfirm(_Resource):
    """``PUT .../confirm`` by the subscription's owner, or by the subscriber
    with the pre-signed headers of the confirmation notification."""

    async def on_put(self, req: Req, resp: Resp, subscription_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        subscriptions.verify_signed_confirmation(ctx, req.method, req.path, req.get_header)
        document, _ = await read_body(req, SMALL_BODY, "confirmation")
        await self.ops.confirm(ctx, parent(params), subscription_id, document,
                               base_url=req.prefix)
        resp.status = falcon.HTTP_204
        resp.location = req.path  # as Zaqar


class SubscriptionDeliveries(_Resource):
    async def on_get(self, req: Req, resp: Resp, subscription_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        result = await self.ops.deliveries(
            ctx, parent(params), subscription_id, status=str_param(req, "status"),
            marker=str_param(req, "marker"), limit=int_param(req, "limit"),
        )
        json_response(resp, result)


def routes(service: Service, base: str, ops: SubscriptionOps = QUEUE_OPS
           ) -> list[tuple[str, Any]]:
    """The subscription routes under ``base`` (a queue's or a topic's path)."""
    path = base + "/subscriptions"
    item = path + "/{subscription_id}"
    return [
        (path, SubscriptionCollection(service, ops)),
        (item, SubscriptionItem(service, ops)),
        (item + "/confirm", SubscriptionConfirm(service, ops)),
        (item + "/deliveries", SubscriptionDeliveries(service, ops)),
    ]
