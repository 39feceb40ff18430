"""Falcon resources: decode the request, call the operation, encode the answer.

Queues and topics share their HTTP shapes (a topic is a queue without
claims, kept in a shadow project by api/topics.py), so one set of
resources serves both: ``EntityOps`` names the operation functions of one
kind, ``QUEUE_ENTITY`` or ``TOPIC_ENTITY``, and the entity's name comes from
the route (``queue_name`` or ``topic_name``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.asgi

from tidings import errors
from tidings.api import claims, messages, queues, redrive, system, topics
from tidings.api.context import Service
from tidings.config import Limits
from tidings.transport import homedoc
from tidings.transport.http.request import (
    bool_param,
    context,
    int_param,
    json_response,
    list_param,
    read_body,
    str_param,
)

Req = falcon.asgi.Request
Resp = falcon.asgi.Response
SocketHandler = Callable[[Req, falcon.asgi.WebSocket], Awaitable[None]]
PostHandler = Callable[[Req, Resp], Awaitable[None]]
Op = Callable[..., Awaitable[Any]]

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
# Small bodies (claims, purge) need no more than this.
SMALL_BODY = 64 * 1024


@dataclass(frozen=True)
class EntityOps:
    """The operations of queues or of topics, by the HTTP resource that calls them."""

    noun: str  # in error descriptions
    list: Op
    create: Op
    get: Op
    patch: Op
    delete: Op
    stats: Op
    purge: Op
    post_messages: Op
    list_messages: Op
    get_messages: Op
    get_message: Op
    delete_message: Op
    delete_messages: Op


QUEUE_ENTITY = EntityOps(
    noun="queue", list=queues.list_queues, create=queues.create, get=queues.get,
    patch=queues.patch, delete=queues.delete, stats=queues.stats, purge=queues.purge,
    post_messages=messages.post, list_messages=messages.list_messages,
    get_messages=messages.get_many, get_message=messages.get, delete_message=messages.delete,
    delete_messages=messages.delete_many,
)
TOPIC_ENTITY = EntityOps(
    noun="topic", list=topics.list_topics, create=topics.create, get=topics.get,
    patch=topics.patch, delete=topics.delete, stats=topics.stats, purge=topics.purge,
    post_messages=topics.post_messages, list_messages=topics.list_messages,
    get_messages=topics.get_messages, get_message=topics.get_message,
    delete_message=topics.delete_message, delete_messages=topics.delete_messages,
)


def parent(params: dict[str, str]) -> str:
    """The queue's or topic's name among a route's fields."""
    name = params.get("queue_name")
    return name if name is not None else params["topic_name"]


class Resource:
    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def limits(self) -> Limits:
        return self.service.limits


class Versions(Resource):
    """``GET /`` is the versions document; a WebSocket upgrade at ``/`` is
    the WebSocket API, handed to ``socket`` (refused when there is none);
    ``POST /`` is the SQS API, handed to ``sqs`` (405 when there is none)."""

    def __init__(self, service: Service, socket: SocketHandler | None = None,
                 sqs: PostHandler | None = None) -> None:
        super().__init__(service)
        self.socket = socket
        self.sqs = sqs
        if sqs is not None:
            self.on_post = sqs

    async def on_get(self, req: Req, resp: Resp) -> None:
        json_response(resp, system.versions(), falcon.HTTP_300)

    async def on_websocket(self, req: Req, ws: falcon.asgi.WebSocket) -> None:
        if self.socket is None:
            await ws.close()  # before accept: the handshake is refused
            return
        await self.socket(req, ws)


class Home(Resource):
    async def on_get(self, req: Req, resp: Resp) -> None:
        context(req, self.service)
        resp.content_type = "application/json-home"
        resp.data = homedoc.DOCUMENT


class Ping(Resource):
    async def on_get(self, req: Req, resp: Resp) -> None:
        context(req, self.service)
        await system.ping(self.service)
        resp.status = falcon.HTTP_204

    on_head = on_get


class Health(Resource):
    async def on_get(self, req: Req, resp: Resp) -> None:
        json_response(resp, await system.health(context(req, self.service)))

    async def on_head(self, req: Req, resp: Resp) -> None:
        context(req, self.service)
        await system.ping(self.service)
        resp.status = falcon.HTTP_204


class EntityResource(Resource):
    def __init__(self, service: Service, ops: EntityOps = QUEUE_ENTITY) -> None:
        super().__init__(service)
        self.ops = ops


class Collection(EntityResource):
    async def on_get(self, req: Req, resp: Resp) -> None:
        ctx = context(req, self.service)
        # Any other parameter filters on a metadata value, as in Zaqar.
        filters = {
            key: value if isinstance(value, str) else value[-1]
            for key, value in req.params.items()
            if key not in queues.LISTING_PARAMS
        }
        result = await self.ops.list(
            ctx,
            marker=str_param(req, "marker"),
            limit=int_param(req, "limit"),
            # None when not given: next links keep only what was (api/links.py).
            detailed=bool_param(req, "detailed", None),
            name=str_param(req, "name"),
            with_count=bool_param(req, "with_count", None),
            metadata_filters=filters,
        )
        json_response(resp, result)


class Item(EntityResource):
    async def on_put(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, self.limits.max_queue_metadata,
                                      f"{self.ops.noun} metadata")
        created = await self.ops.create(ctx, parent(params), document)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_204
        resp.location = req.path

    async def on_get(self, req: Req, resp: Resp, **params: str) -> None:
        json_response(resp, await self.ops.get(context(req, self.service), parent(params)))

    async def on_patch(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        if (req.content_type or "").split(";")[0].strip().lower() != JSON_PATCH:
            resp.append_header("Accept-Patch", JSON_PATCH)
            raise errors.UnsupportedMediaType(f"Accepted media type for PATCH: {JSON_PATCH}.")
        document, _ = await read_body(req, 2 * self.limits.max_queue_metadata, "patch")
        if document is None:
            raise errors.InvalidBody("The PATCH body must be a JSON array of changes.")
        json_response(resp, await self.ops.patch(ctx, parent(params), document))

    async def on_delete(self, req: Req, resp: Resp, **params: str) -> None:
        await self.ops.delete(context(req, self.service), parent(params))
        resp.status = falcon.HTTP_204


class Stats(EntityResource):
    async def on_get(self, req: Req, resp: Resp, **params: str) -> None:
        json_response(resp, await self.ops.stats(context(req, self.service), parent(params)))


class Purge(EntityResource):
    async def on_post(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "purge request")
        await self.ops.purge(ctx, parent(params), document)
        resp.status = falcon.HTTP_204


class QueueRedrive(Resource):
    """Dead-letter redrive, a Tidings extension (docs/redrive.md)."""

    async def on_post(self, req: Req, resp: Resp, queue_name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "redrive request")
        target, limit = redrive.check_request(ctx, queue_name, document)
        json_response(resp, await redrive.redrive(ctx, queue_name, to=target, limit=limit))


class QueueShare(Resource):
    async def on_post(self, req: Req, resp: Resp, queue_name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "share request")
        json_response(resp, await queues.share(ctx, queue_name, document))


class MessageCollection(EntityResource):
    async def on_post(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        document, size = await read_body(
            req, self.limits.max_messages_post_size, "message collection"
        )
        if document is None:
            raise errors.InvalidBody("The request body must hold a \"messages\" array.")
        result = await self.ops.post_messages(ctx, parent(params), document, size)
        # Zaqar names the new messages in Location too (tempest reads the ids there).
        resp.location = f"{req.path}?ids={','.join(messages.posted_ids(result))}"
        json_response(resp, result, falcon.HTTP_201)

    async def on_get(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        ids = list_param(req, "ids")
        if ids is not None:
            json_response(resp, await self.ops.get_messages(ctx, parent(params), ids))
            return
        result = await self.ops.list_messages(
            ctx,
            parent(params),
            marker=str_param(req, "marker"),
            limit=int_param(req, "limit"),
            echo=bool_param(req, "echo", None),
            include_claimed=bool_param(req, "include_claimed", None),
            include_delayed=bool_param(req, "include_delayed", None),
            wait=int_param(req, "wait"),
        )
        json_response(resp, result)

    async def on_delete(self, req: Req, resp: Resp, **params: str) -> None:
        ctx = context(req, self.service)
        popped = await self.ops.delete_messages(
            ctx,
            parent(params),
            list_param(req, "ids"),
            list_param(req, "claim_ids"),
            int_param(req, "pop"),
        )
        if popped is None:
            resp.status = falcon.HTTP_204
        else:
            json_response(resp, popped)


class MessageItem(EntityResource):
    async def on_get(self, req: Req, resp: Resp, message_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        json_response(resp, await self.ops.get_message(ctx, parent(params), message_id))

    async def on_delete(self, req: Req, resp: Resp, message_id: str, **params: str) -> None:
        ctx = context(req, self.service)
        await self.ops.delete_message(ctx, parent(params), message_id,
                                      str_param(req, "claim_id"))
        resp.status = falcon.HTTP_204


class ClaimCollection(Resource):
    async def on_post(self, req: Req, resp: Resp, queue_name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "claim")
        result = await claims.create(ctx, queue_name, document, int_param(req, "limit"),
                                     wait=int_param(req, "wait"))
        if result is None:
            resp.status = falcon.HTTP_204
            return
        resp.location = result["href"]
        json_response(resp, {"messages": result["messages"]}, falcon.HTTP_201)


class ClaimItem(Resource):
    async def on_get(self, req: Req, resp: Resp, queue_name: str, claim_id: str) -> None:
        claim = await claims.get(context(req, self.service), queue_name, claim_id)
        json_response(resp, claim)

    async def on_patch(self, req: Req, resp: Resp, queue_name: str, claim_id: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "claim")
        await claims.update(ctx, queue_name, claim_id, document)
        resp.status = falcon.HTTP_204

    async def on_delete(self, req: Req, resp: Resp, queue_name: str, claim_id: str) -> None:
        await claims.delete(context(req, self.service), queue_name, claim_id)
        resp.status = falcon.HTTP_204
