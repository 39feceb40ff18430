"""Message operations."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from tidings import errors
from tidings.api import crypto, longpoll, queues, quotas, validate
from tidings.api.context import Context
from tidings.api.links import next_links
from tidings.api.pipeline import stage
from tidings.auth import authorize
from tidings.storage.base import Message, NewMessage


def messages_path(queue: str, root: str = queues.QUEUES_PATH) -> str:
    return f"{queues.queue_href(queue, root)}/messages"


def format_message(queue: str, message: Message, claim_id: str | None = None,
                   ctx: Context | None = None) -> dict[str, Any]:
    """Zaqar's v2 message shape: ``id``, ``href``, ``ttl``, ``age``, ``body``.
    A claimed message's href carries its claim id (python-zaqarclient reads
    the claim id from there); there is no ``claim_count``, as in Zaqar. With
    ``ctx``, the href is under the context's root (/v2/topics for topics)
    and an encrypted body is decrypted."""
    claim_id = claim_id or message.claim_id
    body = message.body
    if ctx is None:
        href = f"{messages_path(queue)}/{message.id}"
    else:
        href = f"{messages_path(queue, ctx.href_root)}/{message.id}"
        if crypto.is_encrypted(body):
            body = crypto.decrypt_body(body, ctx.service.encryption_key)
    if claim_id:
        href += f"?claim_id={claim_id}"
    return {
        "id": message.id,
        "href": href,
        "ttl": message.ttl,
        "age": message.age,
        "body": body,
    }


def format_popped(queue: str, message: Message, claim_id: str, ctx: Context
                  ) -> dict[str, Any]:
    """A popped message, as Zaqar answers a pop: with its ``claim_count``
    and the (internal, already gone) claim that took it."""
    formatted = format_message(queue, message, ctx=ctx)
    formatted.update(claim_id=claim_id, claim_count=message.claim_count)
    return formatted


def _new_message(item: Any, index: int, ttl_default: int, delay_default: int, ctx: Context
                 ) -> NewMessage:
    limits = ctx.limits
    if not isinstance(item, dict):
        raise errors.InvalidBody(f"Message {index} must be a JSON object.")
    if "body" not in item:
        raise errors.InvalidBody(f"Missing \"body\" field in message {index}.")
    ttl = item.get("ttl", ttl_default)
    delay = item.get("delay", delay_default)
    ttl = validate.integer(ttl, f"ttl of message {index}")
    delay = validate.integer(delay, f"delay of message {index}")
    validate.in_range(ttl, limits.min_message_ttl, limits.max_message_ttl, "TTL of a message")
    validate.in_range(delay, 0, limits.max_message_delay, "delay of a message")
    return NewMessage(body=item["body"], ttl=ttl, delay=delay)


@stage("message", "post")
async def post(ctx: Context, queue: str, document: Any, size: int) -> dict[str, Any]:
    """Post a batch: all messages or none. Validation comes first, so a bad
    post never creates the queue."""
    authorize(ctx, "messages:create")
    client_id = ctx.require_client_id()
    limits = ctx.limits
    validate.queue_name(queue, limits)
    metadata = await queues.stored_metadata(ctx, queue)
    cap = metadata.get("_max_messages_post_size", limits.max_messages_post_size)
    validate.body_size(size, cap, "message collection")
    document = validate.json_object(document, "request body")
    items = document.get("messages")
    if not isinstance(items, list):
        raise errors.InvalidBody("The request body must hold a \"messages\" array.")
    if not items:
        raise errors.ValidationFailed("No messages to enqueue.")
    ttl_default = metadata.get("_default_message_ttl", limits.default_message_ttl)
    delay_default = metadata.get("_default_message_delay", 0)
    batch = [_new_message(item, i, ttl_default, delay_default, ctx) for i, item in enumerate(items)]
    if crypto.wants_encryption(metadata):
        batch = [NewMessage(body=crypto.seal(ctx.service, metadata, m.body), ttl=m.ttl,
                            delay=m.delay) for m in batch]
    await quotas.check_post(ctx, queue, len(batch))
    ids = await ctx.storage.messages.post(ctx.project, queue, batch, client_id)
    if ctx.service.metrics is not None:
        ctx.service.metrics.posted(ctx.project, queue, len(ids))
    path = messages_path(queue, ctx.href_root)
    return {"resources": [f"{path}/{message_id}" for message_id in ids]}


@stage("message", "list")
async def list_messages(
    ctx: Context,
    queue: str,
    *,
    marker: str | None,
    limit: int | None,
    echo: bool | None,
    include_claimed: bool | None,
    include_delayed: bool | None,
    wait: Any = None,
) -> dict[str, Any]:
    """A page of messages; with ``wait`` (seconds, long polling) an empty
    page waits for a post that long. A flag left out (None) is false and
    stays out of the next link.

    Zaqar's next links also carry ``include_delayed=true`` when the request
    did not ask for it (unless the queue has a default delay): harmless
    there, since Zaqar ignores a message's own ``delay``. Tidings honours
    it, so that would show the next page's delayed messages: the link keeps
    the request's flags only (docs/compatibility.md)."""
    authorize(ctx, "messages:get_all")
    client_id = ctx.require_client_id()
    limits = ctx.limits
    validate.queue_name(queue, limits)
    size = validate.limit(limit, limits.default_messages_per_page, limits.max_messages_per_page,
                          "messages")
    seconds = longpoll.check_wait(ctx, wait)

    def read() -> Any:
        return ctx.storage.messages.list(
            ctx.project, queue, marker=marker, limit=size, client_id=client_id,
            echo=bool(echo), include_claimed=bool(include_claimed),
            include_delayed=bool(include_delayed),
        )

    page, next_marker = await longpoll.read_or_wait(ctx, queue, seconds, read,
                                                    lambda found: not found[0])
    result: dict[str, Any] = {
        "messages": [format_message(queue, m, ctx=ctx) for m in page],
        "links": [],
    }
    if page:
        given = {"echo": echo, "include_claimed": include_claimed,
                 "include_delayed": include_delayed, "limit": limit}
        result["links"] = next_links(messages_path(queue, ctx.href_root), given, next_marker)
    return result


def _ids(ids: Sequence[str], ctx: Context) -> list[str]:
    ids = [i for i in ids if i]
    if not ids:
        raise errors.ValidationFailed("No message ids were given.")
    if len(ids) > ctx.limits.max_messages_per_page:
        raise errors.ValidationFailed(
            f"No more than {ctx.limits.max_messages_per_page} message ids may be given at once."
        )
    return ids


@stage("message", "get")
async def get(ctx: Context, queue: str, message_id: str) -> dict[str, Any]:
    authorize(ctx, "messages:get")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    message = await ctx.storage.messages.get(ctx.project, queue, message_id)
    return format_message(queue, message, ctx=ctx)


@stage("message", "get_many")
async def get_many(ctx: Context, queue: str, ids: Sequence[str]) -> dict[str, Any]:
    authorize(ctx, "messages:get_all")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    found = await ctx.storage.messages.bulk_get(ctx.project, queue, _ids(ids, ctx))
    if not found:
        raise errors.MessageDoesNotExist(f"No messages with ids {', '.join(ids)} found in {queue}.")
    return {"messages": [format_message(queue, m, ctx=ctx) for m in found]}


@stage("message", "delete")
async def delete(ctx: Context, queue: str, message_id: str, claim_id: str | None) -> None:
    authorize(ctx, "messages:delete")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    await ctx.storage.messages.delete(ctx.project, queue, message_id, claim_id)
    if ctx.service.metrics is not None:
        ctx.service.metrics.deleted("delete")


@stage("message", "delete_many")
async def delete_many(
    ctx: Context, queue: str, ids: Sequence[str] | None, claim_ids: Sequence[str] | None,
    pop: int | None,
) -> dict[str, Any] | None:
    """Delete by ids (all or none), or pop up to ``pop`` messages."""
    authorize(ctx, "messages:delete_all")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    if ids is not None and pop is not None:
        raise errors.ValidationFailed("ids and pop may not be specified together.")
    if ids is None and pop is None:
        raise errors.ValidationFailed("Either ids or pop must be specified.")
    if pop is not None:
        maximum = ctx.limits.max_messages_per_claim_or_pop
        if not 0 < pop <= maximum:
            raise errors.ValidationFailed(f"Pop value must be at least 1 and at most {maximum}.")
        popped = await ctx.storage.messages.pop(ctx.project, queue, pop)
        if ctx.service.metrics is not None:
            ctx.service.metrics.deleted("pop", len(popped))
        # Zaqar pops by claiming then deleting: its popped messages name
        # that claim. One id per pop, for the same reason.
        claim_id = uuid.uuid4().hex
        return {"messages": [format_popped(queue, m, claim_id, ctx) for m in popped]}
    ids = _ids(ids or [], ctx)
    await ctx.storage.messages.bulk_delete(ctx.project, queue, ids, claim_ids)
    if ctx.service.metrics is not None:
        ctx.service.metrics.deleted("bulk", len(ids))
    return None


def posted_ids(result: dict[str, Any]) -> list[str]:
    """The ids of the messages a ``post`` created (its hrefs end with them)."""
    return [href.rsplit("/", 1)[1] for href in result["resources"]]
