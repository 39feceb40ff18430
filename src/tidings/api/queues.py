"""Queue operations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from tidings import crypto, errors
from tidings.api import metadata as meta
from tidings.api import quotas, validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.links import QUEUES_PATH, next_links, queue_href
from tidings.api.pipeline import stage
from tidings.auth import signed
from tidings.storage.base import Message, QueueFilters, QueueStats

PATCH_OPS = frozenset({"add", "replace", "remove"})
LISTING_PARAMS = frozenset({"marker", "limit", "detailed", "name", "with_count"})


@stage("queue", "create")
async def create(ctx: Context, name: str, document: Any | None) -> bool:
    """Create a queue; True if it was new. An existing queue keeps its
    metadata, as in Zaqar."""
    authorize(ctx, "queues:create")
    validate.queue_name(name, ctx.limits)
    metadata = meta.check(document, ctx.limits) if document is not None else {}
    crypto.check_metadata(ctx.service, metadata)
    await quotas.check_new_queue(ctx, name)
    return await ctx.storage.queues.create(ctx.project, name, metadata)


@stage("queue", "get")
async def get(ctx: Context, name: str, *, with_defaults: bool = True) -> dict[str, Any]:
    """A queue's metadata with the reserved keys filled in. Queues are lazy:
    one that does not exist yet answers with the defaults. Without
    ``with_defaults`` (Zaqar's WebSocket API): the metadata as stored, and
    QueueDoesNotExist for a queue that does not exist."""
    authorize(ctx, "queues:get")
    validate.queue_name(name, ctx.limits)
    if not with_defaults:
        return await ctx.storage.queues.get_metadata(ctx.project, name)
    try:
        stored = await ctx.storage.queues.get_metadata(ctx.project, name)
    except errors.QueueDoesNotExist:
        stored = {}
    return meta.with_defaults(stored, ctx.limits)


async def stored_metadata(ctx: Context, name: str) -> dict[str, Any]:
    """The metadata as stored, {} for a queue that does not exist."""
    try:
        return await ctx.storage.queues.get_metadata(ctx.project, name)
    except errors.QueueDoesNotExist:
        return {}


async def existing_metadata(ctx: Context, name: str) -> dict[str, Any]:
    """The stored metadata of a queue that exists; QueueDoesNotExist for
    one that does not. For protocols whose queues are not lazy (SQS)."""
    authorize(ctx, "queues:get")
    validate.queue_name(name, ctx.limits)
    return await ctx.storage.queues.get_metadata(ctx.project, name)


@stage("queue", "delete")
async def delete(ctx: Context, name: str) -> None:
    authorize(ctx, "queues:delete")
    validate.queue_name(name, ctx.limits)
    await ctx.storage.queues.delete(ctx.project, name)


def _patch_key(change: Any) -> tuple[str, str, Any]:
    if not isinstance(change, dict):
        raise errors.InvalidBody("Each change must be a JSON object.")
    op, path = change.get("op"), change.get("path")
    if not isinstance(op, str) or op not in PATCH_OPS:
        raise errors.ValidationFailed(
            f"Invalid operation {op!r}: use one of {', '.join(sorted(PATCH_OPS))}."
        )
    if not isinstance(path, str) or not path.startswith("/metadata/") or path == "/metadata/":
        raise errors.ValidationFailed(
            f"Invalid path {path!r}: paths look like /metadata/<key>."
        )
    if op != "remove" and "value" not in change:
        raise errors.ValidationFailed(f"Missing value for the {op} operation.")
    return op, path[len("/metadata/"):], change.get("value")


@stage("queue", "patch")
async def patch(ctx: Context, name: str, changes: Any) -> dict[str, Any]:
    """Apply JSON-patch changes to the metadata; all or none."""
    authorize(ctx, "queues:update")
    validate.queue_name(name, ctx.limits)
    if not isinstance(changes, list):
        raise errors.InvalidBody("The body must be a JSON array of changes.")
    parsed = [_patch_key(change) for change in changes]
    stored = await ctx.storage.queues.get_metadata(ctx.project, name)
    if not parsed:
        return meta.with_defaults(stored, ctx.limits)
    updated = dict(stored)
    # As in Zaqar, the reserved keys always exist (GET shows their defaults):
    # replacing or removing one that is not stored is no conflict. Clients
    # such as python-zaqarclient rely on it: they diff against the GET.
    reserved = meta.reserved_defaults(ctx.limits)
    for op, key, value in parsed:
        if op in ("replace", "remove") and key not in updated and key not in reserved:
            raise errors.Conflict(f"Can't {op} non-existent metadata key {key!r}.")
        if op == "remove":
            updated.pop(key, None)
        else:
            updated[key] = value
    meta.check(updated, ctx.limits)
    crypto.check_metadata(ctx.service, updated)
    await ctx.storage.queues.set_metadata(ctx.project, name, updated)
    return meta.with_defaults(updated, ctx.limits)


@stage("queue", "list")
async def list_queues(
    ctx: Context,
    *,
    marker: str | None,
    limit: int | None,
    detailed: bool | None,
    name: str | None,
    with_count: bool | None,
    metadata_filters: Mapping[str, str],
) -> dict[str, Any]:
    """A page of queues. A flag left out (None) is false and stays out of
    the next link (api/links.py)."""
    authorize(ctx, "queues:get_all")
    limits = ctx.limits
    size = validate.limit(limit, limits.default_queues_per_page, limits.max_queues_per_page,
                          "queues")
    filters = QueueFilters(name=name or None, metadata=tuple(sorted(metadata_filters.items())))
    records = await ctx.storage.queues.list(
        ctx.project, marker=marker, limit=size, detailed=bool(detailed), filters=filters
    )
    queues = []
    for record in records:
        entry: dict[str, Any] = {"name": record.name,
                                 "href": queue_href(record.name, ctx.href_root)}
        if detailed:
            entry["metadata"] = record.metadata or {}
        queues.append(entry)
    result: dict[str, Any] = {"queues": queues, "links": []}
    if queues:
        given = {**metadata_filters, "detailed": detailed, "limit": limit,
                 "name": name or None, "with_count": with_count}
        result["links"] = next_links(ctx.href_root, given, records[-1].name)
    if with_count:
        result["count"] = await ctx.storage.queues.count(ctx.project, filters)
    return result


def format_stats(name: str, stats: QueueStats, root: str = QUEUES_PATH,
                 messages: Mapping[str, Message] | None = None) -> dict[str, Any]:
    """Zaqar's stats. ``oldest`` and ``newest`` have Zaqar's fields: ``age``,
    ``body``, ``claim_count``, ``claim_id`` (null when free), ``created``,
    ``href``, ``ttl``, the message's own from ``messages`` (by id); one
    that went in between (deleted, expired) is left out."""
    body: dict[str, Any] = {
        "claimed": stats.claimed,
        "free": stats.free,
        "total": stats.total,
    }
    for label, stat in (("oldest", stats.oldest), ("newest", stats.newest)):
        message = (messages or {}).get(stat.id) if stat is not None else None
        if stat is not None and message is not None:
            body[label] = {
                "age": stat.age,
                "body": message.body,
                "claim_count": message.claim_count,
                "claim_id": message.claim_id,
                "created": _iso(stat.created),
                "href": f"{queue_href(name, root)}/messages/{stat.id}",
                "ttl": message.ttl,
            }
    return {"messages": body}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@stage("queue", "stats")
async def stats(ctx: Context, name: str, *, lazy: bool = True) -> dict[str, Any]:
    """Counts, and the oldest and newest message. A queue that does not
    exist has zeros, unless not ``lazy`` (Zaqar's WebSocket API):
    QueueDoesNotExist then."""
    authorize(ctx, "queues:stats")
    validate.queue_name(name, ctx.limits)
    if not lazy:
        await ctx.storage.queues.get_metadata(ctx.project, name)
    found = await ctx.storage.queues.stats(ctx.project, name)
    ids = [s.id for s in (found.oldest, found.newest) if s is not None]
    messages: dict[str, Message] = {}
    if ids:
        for message in await ctx.storage.messages.bulk_get(ctx.project, name, ids):
            if crypto.is_encrypted(message.body):
                message.body = crypto.decrypt_body(message.body, ctx.service.encryption_key)
            messages[message.id] = message
    return format_stats(name, found, ctx.href_root, messages)


PURGEABLE = frozenset({"messages", "subscriptions"})


@stage("queue", "purge")
async def purge(ctx: Context, name: str, document: Any | None) -> None:
    """Remove the queue's messages and/or subscriptions, keep the queue."""
    authorize(ctx, "queues:purge")
    validate.queue_name(name, ctx.limits)
    kinds: Any = list(PURGEABLE)
    if document is not None:
        # As in Zaqar: no body purges everything; a body must say what.
        document = validate.json_object(document, "purge request")
        if "resource_types" not in document:
            raise errors.ValidationFailed(
                "resource_types must name some of: messages, subscriptions.")
        kinds = document["resource_types"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise errors.InvalidBody("resource_types must be an array of strings.")
        unknown = sorted(set(kinds) - PURGEABLE)
        if unknown or not kinds:
            raise errors.ValidationFailed(
                "resource_types must name some of: messages, subscriptions."
            )
    if "messages" in kinds:
        await ctx.storage.queues.purge_messages(ctx.project, name)
    if "subscriptions" in kinds:
        await ctx.storage.subscriptions.purge(ctx.project, name)


SHARE_KEYS = frozenset({"paths", "methods", "expires"})


def _names(document: dict[str, Any], key: str, allowed: Any) -> list[str] | None:
    values = document.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise errors.InvalidBody(f"{key} must be an array of strings.")
    invalid = sorted(set(values) - set(allowed))
    if invalid:
        raise errors.ValidationFailed(
            f"Invalid {key}: {', '.join(invalid)}; use some of {', '.join(sorted(allowed))}."
        )
    return values or None


async def share(ctx: Context, name: str, document: Any | None) -> dict[str, Any]:
    """A pre-signed URL for some of the queue's resources (Zaqar's fields:
    signature, expires, paths, methods, project)."""
    authorize(ctx, "queues:share")
    validate.queue_name(name, ctx.limits)
    key = ctx.service.signing_key.value
    if key is None:
        raise errors.ServiceUnavailable(
            "Pre-signed URLs are unavailable: no secret key is configured (auth.secret_key) "
            "and the storage keeps none."
        )
    document = {} if document is None else validate.json_object(document, "share request")
    unknown = sorted(set(document) - SHARE_KEYS)
    if unknown:
        raise errors.ValidationFailed(f"Unknown keys: {', '.join(unknown)}.")
    paths = _names(document, "paths", signed.VALID_PATHS) or ["messages"]
    methods = _names(document, "methods", signed.VALID_METHODS)
    expires = document.get("expires")
    if expires is not None and not isinstance(expires, str):
        raise errors.InvalidBody("expires must be an ISO 8601 time string.")
    try:
        return signed.create(key, [f"{queue_href(name)}/{p}" for p in paths],
                             ctx.project, methods, expires,
                             max_lifetime=timedelta(seconds=ctx.limits.max_share_lifetime))
    except ValueError as exc:
        raise errors.ValidationFailed(str(exc)) from None
