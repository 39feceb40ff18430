"""Dead-letter redrive (a Tidings extension to the Zaqar v2 API).

``redrive(ctx, dlq, to=..., limit=...)`` moves messages out of a dead letter
queue (one that other queues name in ``_dead_letter_queue``) to the tail of
``to``: bodies unchanged, each a fresh message there (unclaimed, claim count
0, so the source queue's ``_max_claim_count`` starts over).

Design: claim, then move under the claim
----------------------------------------
Moving one message is two writes (add it to the target, remove it from the
DLQ); done as two separate API calls a crash in between duplicates it, and
bodies must stay as they were, so no marker can ride along to detect a
repeat. So each batch goes:

1. **claim** up to a batch of DLQ messages for ``CLAIM_TTL`` seconds
   (grace 0, no dead-letter policy: a redrive never dead-letters). The
   claim keeps consumers and concurrent redrives off these messages, and
   names exactly which ones this redrive owns.
2. **move** them with ``MessageController.move(project, dlq, to, ids,
   claim_id)``: add the copies to ``to`` and delete the originals, only
   those still under this claim. SQLite (one write job) and PostgreSQL
   (one transaction, rows locked) do it atomically, so a crash leaves
   every message either still in the DLQ or in the target, once: after a
   crash at step 1 the claim simply expires and the messages can be
   redriven again; a crash inside step 2 rolls it back. Two concurrent
   redrives never claim the same message, and a move ignores messages
   whose claim expired (someone else may hold them by then).
3. the loop stops after ``limit`` messages, or when the DLQ has nothing
   left to claim, or after as many messages as the DLQ held when the
   redrive began (new dead letters arriving meanwhile cannot keep it going
   forever).

Drivers without an atomic move (Redis, whose two queues may live in
different cluster slots, and the pooled driver when the queues are in two
pools) use the base class's post-then-delete-with-the-claim: no loss, but a
crash between the post and the delete redrives that batch again once the
claim expires (at least once; see ``MessageController.move``).

Where to: the target named in the request, or else the source: the queue
of the project whose ``_dead_letter_queue`` names this DLQ (no driver
records which queue a dead letter came from, but a DLQ usually serves one
queue). When several queues name it, or none, the target must be named.
"""

from __future__ import annotations

from typing import Any

from tidings import errors
from tidings.api import quotas, validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.messages import messages_path
from tidings.api.pipeline import stage
from tidings.storage.base import QueueFilters

# How long a redrive holds the batch it is moving: long enough for one move,
# short enough that a crashed redrive leaves little waiting.
CLAIM_TTL = 60


def check_request(ctx: Context, dlq: str, document: Any) -> tuple[str | None, int | None]:
    """The target queue and limit of a redrive request body."""
    document = validate.json_object({} if document is None else document, "redrive request")
    unknown = sorted(set(document) - {"to", "limit"})
    if unknown:
        raise errors.ValidationFailed(f"Unknown keys: {', '.join(unknown)}.")
    target = document.get("to")
    if target is not None and (not isinstance(target, str) or not target):
        raise errors.ValidationFailed("\"to\" must name a queue.")
    limit = document.get("limit")
    if limit is not None:
        limit = validate.integer(limit, "limit")
    return target, limit


async def source_of(ctx: Context, dlq: str, target_option: str = '"to"') -> str:
    """The one queue of the project whose dead letter queue is ``dlq``;
    errors tell to name the target in ``target_option`` (the request's
    field, or the command line's option)."""
    # The storage filters the listing; two names are enough to tell "one"
    # from "several".
    page = await ctx.storage.queues.list(
        ctx.project, marker=None, limit=2, detailed=False,
        filters=QueueFilters(metadata=(("_dead_letter_queue", dlq),)))
    found = [q.name for q in page]
    if len(found) == 1:
        return found[0]
    if not found:
        raise errors.ValidationFailed(
            f"No queue names {dlq} as its dead letter queue: name the queue to redrive to "
            f"in {target_option}.")
    raise errors.ValidationFailed(
        f"Several queues name {dlq} as their dead letter queue ({', '.join(found)}): "
        f"name the one to redrive to in {target_option}.")


@stage("queue", "redrive")
async def redrive(ctx: Context, dlq: str, *, to: str | None = None,
                  limit: int | None = None, target_option: str = '"to"') -> dict[str, Any]:
    """Move up to ``limit`` messages (all when None) from ``dlq`` to ``to``
    (when None, the queue that names ``dlq`` as its dead letter queue);
    ``{"moved": n, "to": queue, "messages": [hrefs in the target]}``."""
    authorize(ctx, "queues:redrive")
    ctx.require_client_id()
    limits = ctx.limits
    validate.queue_name(dlq, limits)
    if to is None:
        to = await source_of(ctx, dlq, target_option)
    validate.queue_name(to, limits)
    if to == dlq:
        raise errors.ValidationFailed("A queue cannot be redriven to itself.")
    if limit is not None and limit < 1:
        raise errors.ValidationFailed("limit must be at least 1.")
    storage = ctx.storage
    backlog = (await storage.queues.stats(ctx.project, dlq)).total
    wanted = backlog if limit is None else min(limit, backlog)
    batch_size = limits.max_messages_per_claim_or_pop
    moved: list[str] = []
    while len(moved) < wanted:
        size = min(batch_size, wanted - len(moved))
        # No dead-letter policy: this claim never moves anything itself.
        result = await storage.claims.create(
            ctx.project, dlq, ttl=CLAIM_TTL, grace=0, limit=size, dead_letter=None)
        claim_id, claimed = result.claim_id, result.messages
        if claim_id is None or not claimed:
            break
        try:
            await quotas.check_post(ctx, to, len(claimed))
        except errors.TidingsError:
            await storage.claims.delete(ctx.project, dlq, claim_id)  # nothing moved
            raise
        ids = await storage.messages.move(ctx.project, dlq, to, [m.id for m in claimed],
                                          claim_id)
        if len(ids) < len(claimed):
            # Some were gone before the move: let the rest go at once.
            await storage.claims.delete(ctx.project, dlq, claim_id)
        moved += ids
        if not ids:
            break
    if moved and ctx.service.wake_notifier is not None:
        ctx.service.wake_notifier()  # subscribers of the target have deliveries
    path = messages_path(to, ctx.href_root)
    return {"moved": len(moved), "to": to, "messages": [f"{path}/{i}" for i in moved]}
