"""Topics: Zaqar's pub/sub entity, at ``/v2/topics/...``.

A topic is a queue of a shadow project, ``topic_project(project)`` =
``project + "\\x1ftopics"``. Real project ids may not contain control
characters (api/context.py), so the two namespaces never meet. Every topic
operation authorizes against the caller's real project (Zaqar's
``topics:*`` policies, and ``messages:*`` / ``subscription:*`` for what is
under a topic), then runs the queue operation on a context whose project is
the shadow one and whose hrefs say /v2/topics.

Pipeline: the ``topic`` stages wrap the topic operations; the queue,
message and subscription operations they run go through their own stages
too, with ``ctx.href_root == "/v2/topics"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tidings import errors
from tidings.api import deliveries, messages, queues, subscriptions, validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.pipeline import stage

TOPIC_SUFFIX = "\x1ftopics"
TOPICS_PATH = "/v2/topics"


class InvalidTopicName(errors.InvalidQueueName):
    title = "Invalid topic identification"


def topic_project(project: str) -> str:
    return project + TOPIC_SUFFIX


def topic_context(ctx: Context, *, as_subscriber: bool = False) -> Context:
    """The context of the topic's queue: the shadow project, /v2/topics
    hrefs, and no identity (the topic operation has authorized already).
    ``as_subscriber`` keeps who asked, with their token, for the trust of a
    trust+ subscriber (api/subscriptions.py)."""
    return Context(service=ctx.service, project=topic_project(ctx.project),
                   client_id=ctx.client_id, identity=None, href_root=TOPICS_PATH,
                   auth_token=ctx.auth_token if as_subscriber else None,
                   trustor=ctx.identity if as_subscriber else None)


def check_name(ctx: Context, name: str) -> str:
    try:
        return validate.queue_name(name, ctx.limits)
    except errors.InvalidQueueName as exc:
        raise InvalidTopicName(exc.description.replace("Queue names", "Topic names")) from None


# --- the topic itself -------------------------------------------------------------


@stage("topic", "create")
async def create(ctx: Context, name: str, document: Any | None) -> bool:
    authorize(ctx, "topics:create")
    check_name(ctx, name)
    return await queues.create(topic_context(ctx), name, document)


@stage("topic", "get")
async def get(ctx: Context, name: str) -> dict[str, Any]:
    authorize(ctx, "topics:get")
    check_name(ctx, name)
    return await queues.get(topic_context(ctx), name)


@stage("topic", "delete")
async def delete(ctx: Context, name: str) -> None:
    authorize(ctx, "topics:delete")
    check_name(ctx, name)
    shadow = topic_context(ctx)
    await shadow.storage.subscriptions.purge(shadow.project, name)
    await queues.delete(shadow, name)


@stage("topic", "patch")
async def patch(ctx: Context, name: str, changes: Any) -> dict[str, Any]:
    authorize(ctx, "topics:update")
    check_name(ctx, name)
    return await queues.patch(topic_context(ctx), name, changes)


@stage("topic", "list")
async def list_topics(ctx: Context, *, marker: str | None, limit: int | None, detailed: bool,
                      name: str | None, with_count: bool,
                      metadata_filters: Mapping[str, str]) -> dict[str, Any]:
    authorize(ctx, "topics:get_all")
    result = await queues.list_queues(
        topic_context(ctx), marker=marker, limit=limit, detailed=detailed, name=name,
        with_count=with_count, metadata_filters=metadata_filters,
    )
    result["topics"] = result.pop("queues")
    return result


@stage("topic", "stats")
async def stats(ctx: Context, name: str) -> dict[str, Any]:
    authorize(ctx, "topics:stats")
    check_name(ctx, name)
    return await queues.stats(topic_context(ctx), name)


@stage("topic", "purge")
async def purge(ctx: Context, name: str, document: Any | None) -> None:
    authorize(ctx, "topics:purge")
    check_name(ctx, name)
    await queues.purge(topic_context(ctx), name, document)


# --- messages -----------------------------------------------------------------------


async def post_messages(ctx: Context, name: str, document: Any, size: int) -> dict[str, Any]:
    authorize(ctx, "messages:create")
    check_name(ctx, name)
    return await messages.post(topic_context(ctx), name, document, size)


async def list_messages(ctx: Context, name: str, **params: Any) -> dict[str, Any]:
    authorize(ctx, "messages:get_all")
    check_name(ctx, name)
    return await messages.list_messages(topic_context(ctx), name, **params)


async def get_message(ctx: Context, name: str, message_id: str) -> dict[str, Any]:
    authorize(ctx, "messages:get")
    check_name(ctx, name)
    return await messages.get(topic_context(ctx), name, message_id)


async def get_messages(ctx: Context, name: str, ids: Sequence[str]) -> dict[str, Any]:
    authorize(ctx, "messages:get_all")
    check_name(ctx, name)
    return await messages.get_many(topic_context(ctx), name, ids)


async def delete_message(ctx: Context, name: str, message_id: str, claim_id: str | None
                         ) -> None:
    authorize(ctx, "messages:delete")
    check_name(ctx, name)
    await messages.delete(topic_context(ctx), name, message_id, claim_id)


async def delete_messages(ctx: Context, name: str, ids: Sequence[str] | None,
                          claim_ids: Sequence[str] | None, pop: int | None
                          ) -> dict[str, Any] | None:
    authorize(ctx, "messages:delete_all")
    check_name(ctx, name)
    return await messages.delete_many(topic_context(ctx), name, ids, claim_ids, pop)


# --- subscriptions ------------------------------------------------------------------


async def create_subscription(ctx: Context, name: str, document: Any, **kwargs: Any
                              ) -> dict[str, Any]:
    authorize(ctx, "subscription:create")
    check_name(ctx, name)
    return await subscriptions.create(topic_context(ctx, as_subscriber=True), name, document,
                                      **kwargs)


async def list_subscriptions(ctx: Context, name: str, **kwargs: Any) -> dict[str, Any]:
    authorize(ctx, "subscription:get_all")
    check_name(ctx, name)
    return await subscriptions.list_subscriptions(topic_context(ctx), name, **kwargs)


async def get_subscription(ctx: Context, name: str, subscription_id: str) -> dict[str, Any]:
    authorize(ctx, "subscription:get")
    check_name(ctx, name)
    return await subscriptions.get(topic_context(ctx), name, subscription_id)


async def update_subscription(ctx: Context, name: str, subscription_id: str, document: Any,
                              **kwargs: Any) -> None:
    authorize(ctx, "subscription:update")
    check_name(ctx, name)
    await subscriptions.update(topic_context(ctx, as_subscriber=True), name, subscription_id,
                               document, **kwargs)


async def delete_subscription(ctx: Context, name: str, subscription_id: str) -> None:
    authorize(ctx, "subscription:delete")
    check_name(ctx, name)
    await subscriptions.delete(topic_context(ctx), name, subscription_id)


async def confirm_subscription(ctx: Context, name: str, subscription_id: str, document: Any,
                               **kwargs: Any) -> None:
    authorize(ctx, "subscription:confirm")
    check_name(ctx, name)
    await subscriptions.confirm(topic_context(ctx), name, subscription_id, document, **kwargs)


async def list_deliveries(ctx: Context, name: str, subscription_id: str, **kwargs: Any
                          ) -> dict[str, Any]:
    authorize(ctx, "subscription:get")
    check_name(ctx, name)
    return await deliveries.list_deliveries(topic_context(ctx), name, subscription_id, **kwargs)
