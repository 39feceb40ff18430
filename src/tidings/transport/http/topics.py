"""Falcon resources of topics (``/v2/topics/...``): Zaqar's pub/sub entity.

The same shapes as queues (api/topics.py runs the queue operations on the
topic's shadow project); a topic has no claims.
"""

from __future__ import annotations

from typing import Any

import falcon

from tidings import errors
from tidings.api import queues, topics
from tidings.api.context import Service
from tidings.transport.http import subscriptions
from tidings.transport.http.request import (
    bool_param,
    context,
    int_param,
    json_response,
    list_param,
    read_body,
    str_param,
)
from tidings.transport.http.resources import JSON_PATCH, SMALL_BODY, Req, Resource, Resp

TOPIC = "/v2/topics/{topic_name}"


class TopicCollection(Resource):
    async def on_get(self, req: Req, resp: Resp) -> None:
        ctx = context(req, self.service)
        filters = {
            key: value if isinstance(value, str) else value[-1]
            for key, value in req.params.items()
            if key not in queues.LISTING_PARAMS
        }
        result = await topics.list_topics(
            ctx,
            marker=str_param(req, "marker"),
            limit=int_param(req, "limit"),
            detailed=bool_param(req, "detailed"),
            name=str_param(req, "name"),
            with_count=bool_param(req, "with_count"),
            metadata_filters=filters,
        )
        json_response(resp, result)


class TopicItem(Resource):
    async def on_put(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, self.limits.max_queue_metadata, "topic metadata")
        created = await topics.create(ctx, topic_name, document)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_204
        resp.location = req.path

    async def on_get(self, req: Req, resp: Resp, topic_name: str) -> None:
        json_response(resp, await topics.get(context(req, self.service), topic_name))

    async def on_patch(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        if (req.content_type or "").split(";")[0].strip().lower() != JSON_PATCH:
            resp.append_header("Accept-Patch", JSON_PATCH)
            raise errors.UnsupportedMediaType(f"Accepted media type for PATCH: {JSON_PATCH}.")
        document, _ = await read_body(req, 2 * self.limits.max_queue_metadata, "patch")
        if document is None:
            raise errors.InvalidBody("The PATCH body must be a JSON array of changes.")
        json_response(resp, await topics.patch(ctx, topic_name, document))

    async def on_delete(self, req: Req, resp: Resp, topic_name: str) -> None:
        await topics.delete(context(req, self.service), topic_name)
        resp.status = falcon.HTTP_204


class TopicStats(Resource):
    async def on_get(self, req: Req, resp: Resp, topic_name: str) -> None:
        json_response(resp, await topics.stats(context(req, self.service), topic_name))


class TopicPurge(Resource):
    async def on_post(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "purge request")
        await topics.purge(ctx, topic_name, document)
        resp.status = falcon.HTTP_204


class TopicMessages(Resource):
    async def on_post(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        document, size = await read_body(
            req, self.limits.max_messages_post_size, "message collection"
        )
        if document is None:
            raise errors.InvalidBody("The request body must hold a \"messages\" array.")
        result = await topics.post_messages(ctx, topic_name, document, size)
        json_response(resp, result, falcon.HTTP_201)

    async def on_get(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        ids = list_param(req, "ids")
        if ids is not None:
            json_response(resp, await topics.get_messages(ctx, topic_name, ids))
            return
        result = await topics.list_messages(
            ctx,
            topic_name,
            marker=str_param(req, "marker"),
            limit=int_param(req, "limit"),
            echo=bool_param(req, "echo"),
            include_claimed=bool_param(req, "include_claimed"),
            include_delayed=bool_param(req, "include_delayed"),
            wait=int_param(req, "wait"),
        )
        json_response(resp, result)

    async def on_delete(self, req: Req, resp: Resp, topic_name: str) -> None:
        ctx = context(req, self.service)
        popped = await topics.delete_messages(
            ctx, topic_name, ids=list_param(req, "ids"), claim_ids=list_param(req, "claim_ids"),
            pop=int_param(req, "pop"),
        )
        if popped is None:
            resp.status = falcon.HTTP_204
        else:
            json_response(resp, popped)


class TopicMessage(Resource):
    async def on_get(self, req: Req, resp: Resp, topic_name: str, message_id: str) -> None:
        ctx = context(req, self.service)
        json_response(resp, await topics.get_message(ctx, topic_name, message_id))

    async def on_delete(self, req: Req, resp: Resp, topic_name: str, message_id: str) -> None:
        ctx = context(req, self.service)
        await topics.delete_message(ctx, topic_name, message_id, str_param(req, "claim_id"))
        resp.status = falcon.HTTP_204


def routes(service: Service) -> list[tuple[str, Any]]:
    return [
        ("/v2/topics", TopicCollection(service)),
        (TOPIC, TopicItem(service)),
        (TOPIC + "/stats", TopicStats(service)),
        (TOPIC + "/purge", TopicPurge(service)),
        (TOPIC + "/messages", TopicMessages(service)),
        (TOPIC + "/messages/{message_id}", TopicMessage(service)),
        *subscriptions.routes(service, TOPIC, subscriptions.TOPIC_OPS),
    ]
