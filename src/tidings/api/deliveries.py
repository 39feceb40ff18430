"""The deliveries of a subscription (an API extension):

    GET /v2/queues/{q}/subscriptions/{id}/deliveries?status=dead|pending&marker&limit

lists the notifications still owed to the subscriber (``pending``) or
given up on (``dead``, the default), oldest first, so an operator can see
why a subscriber gets nothing. Message bodies are shown decrypted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tidings import crypto, errors
from tidings.api import validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.subscriptions import subscriptions_path
from tidings.storage.base import Delivery, DeliveryKind, DeliveryStatus

STATUSES = {status.value: status for status in DeliveryStatus}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_delivery(ctx: Context, delivery: Delivery) -> dict[str, Any]:
    payload = delivery.payload
    if delivery.kind is DeliveryKind.MESSAGE and crypto.is_encrypted(payload.get("body")):
        payload = {**payload, "body": crypto.decrypt_body(payload["body"],
                                                           ctx.service.encryption_key)}
    return {
        "id": delivery.id,
        "kind": delivery.kind.value,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created": _iso(delivery.created),
        "payload": payload,
    }


async def list_deliveries(ctx: Context, queue: str, subscription_id: str, *,
                          status: str | None, marker: str | None, limit: int | None
                          ) -> dict[str, Any]:
    authorize(ctx, "subscription:get")
    limits = ctx.limits
    validate.queue_name(queue, limits)
    state = STATUSES.get(status or "dead")
    if state is None:
        raise errors.ValidationFailed(
            f"status must be one of {', '.join(sorted(STATUSES))}, not {status!r}."
        )
    size = validate.limit(limit, limits.default_subscriptions_per_page,
                          limits.max_subscriptions_per_page, "deliveries")
    # 404 for an unknown subscription rather than an empty list.
    await ctx.storage.subscriptions.get(ctx.project, queue, subscription_id)
    page = await ctx.storage.deliveries.list(ctx.project, queue, status=state, marker=marker,
                                             limit=size, subscription_id=subscription_id)
    result: dict[str, Any] = {"deliveries": [format_delivery(ctx, d) for d in page],
                              "links": []}
    if page:
        query = urlencode({"status": state.value, "marker": page[-1].id, "limit": size})
        path = f"{subscriptions_path(queue, ctx.href_root)}/{subscription_id}/deliveries"
        result["links"] = [{"rel": "next", "href": f"{path}?{query}"}]
    return result
