"""Claim operations."""

from __future__ import annotations

import asyncio
from typing import Any

from tidings import errors
from tidings.api import longpoll, queues, validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.links import QUEUES_PATH, queue_part_href
from tidings.api.messages import format_message
from tidings.api.pipeline import stage
from tidings.storage.base import ClaimResult, DeadLetterPolicy


def claims_path(queue: str, root: str = QUEUES_PATH) -> str:
    return queue_part_href(queue, "claims", root)


def _ttl_and_grace(ctx: Context, document: Any | None) -> tuple[int, int]:
    limits = ctx.limits
    document = {} if document is None else validate.json_object(document, "claim")
    # null means "the default": python-zaqarclient sends it for an unset ttl.
    ttl = document.get("ttl")
    grace = document.get("grace")
    ttl = validate.integer(limits.default_claim_ttl if ttl is None else ttl, "ttl")
    grace = validate.integer(limits.default_claim_grace if grace is None else grace, "grace")
    validate.in_range(ttl, limits.min_claim_ttl, limits.max_claim_ttl, "TTL of a claim")
    validate.in_range(grace, limits.min_claim_grace, limits.max_claim_grace, "grace of a claim")
    return ttl, grace


def _dead_letter_policy(metadata: dict[str, Any]) -> DeadLetterPolicy | None:
    max_count = metadata.get("_max_claim_count")
    if not max_count:
        return None
    return DeadLetterPolicy(
        max_claim_count=max_count,
        queue=metadata.get("_dead_letter_queue"),
        ttl=metadata.get("_dead_letter_queue_messages_ttl"),
    )


@stage("claim", "create")
async def create(
    ctx: Context, queue: str, document: Any | None, limit: int | None, wait: Any = None,
    receive_counts: bool = False,
) -> dict[str, Any] | None:
    """Claim messages; None when there was nothing to claim (after waiting
    up to ``wait`` seconds for a post: long polling). Zaqar's claimed
    messages carry no ``claim_count``; ``receive_counts`` adds it, for the
    SQS API's ApproximateReceiveCount."""
    authorize(ctx, "claims:create")
    ctx.require_client_id()
    limits = ctx.limits
    validate.queue_name(queue, limits)
    if limit is None and isinstance(document, dict) and "limit" in document:
        # openstacksdk sends the claim's limit in the body, not the query.
        limit = validate.integer(document["limit"], "limit")
    size = validate.limit(limit, limits.default_messages_per_claim,
                          limits.max_messages_per_claim_or_pop, "messages")
    ttl, grace = _ttl_and_grace(ctx, document)
    seconds = longpoll.check_wait(ctx, wait)
    metadata = await queues.stored_metadata(ctx, queue)
    dead_letter = _dead_letter_policy(metadata)
    metrics = ctx.service.metrics

    async def claim() -> ClaimResult:
        result = await ctx.storage.claims.create(ctx.project, queue, ttl=ttl, grace=grace,
                                                 limit=size, dead_letter=dead_letter)
        # Counted at every storage call, not once per request: a long poll
        # may claim several times, and a claim that found only messages to
        # dead-letter claims nothing yet has moved them.
        if metrics is not None:
            metrics.dead_lettered(result.dead_lettered)
        return result

    result = await longpoll.read_or_wait(ctx, queue, seconds, claim,
                                         lambda found: found.claim_id is None)
    claim_id, claimed = result.claim_id, result.messages
    if claim_id is None:
        return None
    if metrics is not None:
        metrics.claimed(len(claimed))
    messages = [format_message(queue, m, claim_id, ctx) for m in claimed]
    if receive_counts:
        for formatted, message in zip(messages, claimed, strict=True):
            formatted["claim_count"] = message.claim_count
    return {
        "claim_id": claim_id,
        "href": f"{claims_path(queue, ctx.href_root)}/{claim_id}",
        "messages": messages,
    }


async def create_each(ctx: Context, queue: str, document: Any | None, count: int,
                      wait: Any = None) -> list[tuple[dict[str, Any], str]]:
    """Up to ``count`` messages, each in a claim of its own, as (message,
    claim id): the SQS API's receive, where one message's visibility
    changes alone. Only the first claim waits for a post; the others are
    made at once, so the storage groups them (one transaction, statement or
    pipeline) instead of one after another. If one fails, the claims made
    are released and its error is raised."""
    first = await create(ctx, queue, document, 1, wait=wait, receive_counts=True)
    results = [first]
    if first is not None and count > 1:
        more = await asyncio.gather(
            *(create(ctx, queue, document, 1, receive_counts=True) for _ in range(count - 1)),
            return_exceptions=True)
        results += [r for r in more if not isinstance(r, BaseException)]
        failed = [r for r in more if isinstance(r, BaseException)]
        if failed:
            await release(ctx, queue, _claimed(results))
            raise failed[0]
    return _claimed(results)


def _claimed(results: list[dict[str, Any] | None]) -> list[tuple[dict[str, Any], str]]:
    return [(m, result["claim_id"]) for result in results if result is not None
            for m in result["messages"]]


async def release(ctx: Context, queue: str, claimed: list[tuple[dict[str, Any], str]]) -> None:
    """End the claims of ``claimed`` (from create_each): visible again."""
    await asyncio.gather(*(delete(ctx, queue, claim_id)
                           for claim_id in dict.fromkeys(c for _, c in claimed)))


@stage("claim", "get")
async def get(ctx: Context, queue: str, claim_id: str) -> dict[str, Any]:
    authorize(ctx, "claims:get")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    claim = await ctx.storage.claims.get(ctx.project, queue, claim_id)
    # Zaqar's fields exactly: no id (it ends the href), no grace.
    return {
        "age": claim.age,
        "ttl": claim.ttl,
        "href": f"{claims_path(queue, ctx.href_root)}/{claim.id}",
        "messages": [format_message(queue, m, claim.id, ctx) for m in claim.messages],
    }


@stage("claim", "update")
async def update(ctx: Context, queue: str, claim_id: str, document: Any) -> None:
    authorize(ctx, "claims:update")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    if document is None:
        raise errors.InvalidBody("A claim update needs a body with ttl and/or grace.")
    ttl, grace = _ttl_and_grace(ctx, document)
    await ctx.storage.claims.update(ctx.project, queue, claim_id, ttl=ttl, grace=grace)


@stage("claim", "delete")
async def delete(ctx: Context, queue: str, claim_id: str) -> None:
    authorize(ctx, "claims:delete")
    ctx.require_client_id()
    validate.queue_name(queue, ctx.limits)
    await ctx.storage.claims.delete(ctx.project, queue, claim_id)
