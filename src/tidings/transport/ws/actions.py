"""The actions of Zaqar's WebSocket API.

Each action pulls its arguments out of the request body, by the names
Zaqar's WebSocket API and python-zaqarclient use, and calls the operation
its HTTP route calls; it returns ``(status, body)``. The checks here only
decode the request (a field of the wrong JSON type is Zaqar's "Schema
validation failed."); every rule lives in ``tidings.api``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import msgspec

from tidings import errors
from tidings.api import claims, messages, queues, system
from tidings.api.context import Context
from tidings.transport.http.homedoc import HOME

Body = dict[str, Any]
Reply = tuple[int, Any]
# ``ctx`` is None only for the actions in NO_HEADERS.
Action = Callable[[Context, Body], Awaitable[Reply]]


class SchemaError(Exception):
    """A required field is missing, or a field has the wrong JSON type."""


# --- reading the body ---------------------------------------------------------


def _get(body: Body, key: str, kind: type | tuple[type, ...], required: bool) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise SchemaError(f"{key} is required")
        return None
    # bool is an int in Python, never in JSON.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SchemaError(f"{key} has the wrong type")
    return value


def _name(body: Body, key: str = "queue_name") -> str:
    return _get(body, key, str, required=True)


def _text(body: Body, key: str) -> str | None:
    return _get(body, key, str, required=False)


def _int(body: Body, key: str) -> int | None:
    return _get(body, key, int, required=False)


def _flag(body: Body, key: str) -> bool | None:
    """A boolean field; None when the request left it out."""
    return _get(body, key, bool, required=False)


def _ids(body: Body, *keys: str) -> list[str] | None:
    """A list of ids under the first of ``keys`` present."""
    for key in keys:
        ids = _get(body, key, list, required=False)
        if ids is not None:
            if not all(isinstance(i, str) for i in ids):
                raise SchemaError(f"{key} must hold strings")
            return ids
    return None


def _subset(body: Body, *keys: str) -> Body | None:
    """The fields of a small document (a claim's ttl and grace), or None."""
    document = {key: body[key] for key in keys if key in body}
    return document or None


def with_claim_ids(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Zaqar's WebSocket messages carry ``claim_id`` (null when free), which
    its HTTP API keeps in the href only (where the operation put it)."""
    for message in found:
        query = urlsplit(message["href"]).query
        message.setdefault("claim_id", parse_qs(query).get("claim_id", [None])[0])
    return found


# --- the actions --------------------------------------------------------------


async def authenticate(ctx: Context, body: Body) -> Reply:
    # noauth: every socket is authenticated; the project comes with each request.
    return 200, {"message": "Authentified."}


async def ping(ctx: Context, body: Body) -> Reply:
    await system.ping(ctx.service)
    return 204, {}


async def home_doc(ctx: Context, body: Body) -> Reply:
    return 200, HOME


async def health(ctx: Context, body: Body) -> Reply:
    return 200, await system.health(ctx)


async def queue_list(ctx: Context, body: Body) -> Reply:
    result = await queues.list_queues(
        ctx,
        marker=_text(body, "marker"),
        limit=_int(body, "limit"),
        detailed=_flag(body, "detailed"),
        name=_text(body, "name"),
        with_count=_flag(body, "with_count"),
        metadata_filters={},
    )
    return 200, result


async def queue_create(ctx: Context, body: Body) -> Reply:
    name = _name(body)
    created = await queues.create(ctx, name, body.get("metadata"))
    return (201 if created else 204), f"Queue {name} created."


async def queue_delete(ctx: Context, body: Body) -> Reply:
    name = _name(body)
    await queues.delete(ctx, name)
    return 204, f"Queue {name} removed."


async def queue_get(ctx: Context, body: Body) -> Reply:
    # As Zaqar's WebSocket API: the metadata as stored (no reserved
    # defaults, unlike HTTP), 404 for a queue that does not exist.
    return 200, await queues.get(ctx, _name(body), with_defaults=False)


async def queue_get_stats(ctx: Context, body: Body) -> Reply:
    try:
        return 200, await queues.stats(ctx, _name(body), lazy=False)
    except errors.QueueDoesNotExist:
        # Zaqar's answer for a queue that does not exist: 404 with zeros.
        return 404, {"messages": {"claimed": 0, "free": 0, "total": 0}}


async def queue_purge(ctx: Context, body: Body) -> Reply:
    await queues.purge(ctx, _name(body), _subset(body, "resource_types"))
    return 204, {}


async def message_list(ctx: Context, body: Body) -> Reply:
    result = await messages.list_messages(
        ctx,
        _name(body),
        marker=_text(body, "marker"),
        limit=_int(body, "limit"),
        echo=_flag(body, "echo"),
        include_claimed=_flag(body, "include_claimed"),
        include_delayed=_flag(body, "include_delayed"),
        wait=_get(body, "wait", (int, float), required=False),
    )
    # Zaqar's WebSocket listing has no links.
    return 200, {"messages": with_claim_ids(result["messages"])}


async def message_get(ctx: Context, body: Body) -> Reply:
    message = await messages.get(ctx, _name(body), _name(body, "message_id"))
    return 200, {"messages": with_claim_ids([message])[0]}


async def message_get_many(ctx: Context, body: Body) -> Reply:
    name = _name(body)
    ids = _ids(body, "message_ids", "ids")
    if ids is None:
        raise SchemaError("message_ids is required")
    result = await messages.get_many(ctx, name, ids)
    return 200, {"messages": with_claim_ids(result["messages"])}


async def message_post(ctx: Context, body: Body) -> Reply:
    name = _name(body)
    document = {"messages": body.get("messages")}
    # The post limit counts the messages as JSON, whatever the frame's encoding.
    size = len(msgspec.json.encode(document))
    result = await messages.post(ctx, name, document, size)
    return 201, {"message_ids": messages.posted_ids(result)}


async def message_delete(ctx: Context, body: Body) -> Reply:
    await messages.delete(ctx, _name(body), _name(body, "message_id"), _text(body, "claim_id"))
    return 204, {}


async def message_delete_many(ctx: Context, body: Body) -> Reply:
    popped = await messages.delete_many(
        ctx,
        _name(body),
        ids=_ids(body, "message_ids", "ids"),
        claim_ids=_ids(body, "claim_ids"),
        pop=_int(body, "pop"),
    )
    return (204, {}) if popped is None else (200, popped)


async def message_pop(ctx: Context, body: Body) -> Reply:
    popped = await messages.delete_many(
        ctx, _name(body), ids=None, claim_ids=None, pop=_int(body, "pop")
    )
    return 200, popped


async def claim_create(ctx: Context, body: Body) -> Reply:
    claim = await claims.create(ctx, _name(body), _subset(body, "ttl", "grace"),
                                _int(body, "limit"),
                                wait=_get(body, "wait", (int, float), required=False))
    if claim is None:
        return 204, {}
    with_claim_ids(claim["messages"])
    return 201, claim


async def claim_get(ctx: Context, body: Body) -> Reply:
    claim = await claims.get(ctx, _name(body), _name(body, "claim_id"))
    with_claim_ids(claim["messages"])
    return 200, claim


async def claim_update(ctx: Context, body: Body) -> Reply:
    claim_id = _name(body, "claim_id")
    await claims.update(ctx, _name(body), claim_id, _subset(body, "ttl", "grace"))
    return 204, f"Claim {claim_id} updated."


async def claim_delete(ctx: Context, body: Body) -> Reply:
    claim_id = _name(body, "claim_id")
    await claims.delete(ctx, _name(body), claim_id)
    return 204, f"Claim {claim_id} deleted."


ACTIONS: dict[str, Action] = {
    "authenticate": authenticate,
    "ping": ping,
    "ping_node": ping,
    "get_home_doc": home_doc,
    "homedoc": home_doc,  # python-zaqarclient's name
    "check_node_health": health,
    "health": health,  # python-zaqarclient's name
    "queue_list": queue_list,
    "queue_create": queue_create,
    "queue_delete": queue_delete,
    "queue_get": queue_get,
    "queue_get_stats": queue_get_stats,
    "queue_purge": queue_purge,
    "message_list": message_list,
    "message_get": message_get,
    "message_get_many": message_get_many,
    "message_post": message_post,
    "message_delete": message_delete,
    "message_delete_many": message_delete_many,
    "message_pop": message_pop,
    "claim_create": claim_create,
    "claim_get": claim_get,
    "claim_update": claim_update,
    "claim_delete": claim_delete,
}

# Actions answered without the Client-ID and X-Project-ID headers.
NO_HEADERS = frozenset({"authenticate"})
