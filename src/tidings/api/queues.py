"""Queue operations."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlencode

from tidings import errors
from tidings.api import metadata as meta
from tidings.api import validate
from tidings.api.context import Context
from tidings.storage.base import QueueFilters, QueueStats

QUEUES_PATH = "/v2/queues"
PATCH_OPS = frozenset({"add", "replace", "remove"})
LISTING_PARAMS = frozenset({"marker", "limit", "detailed", "name", "with_count"})


def queue_href(name: str) -> str:
    return f"{QUEUES_PATH}/{name}"


async def create(ctx: Context, name: str, document: Any | None) -> bool:
    """Create a queue; True if it was new. An existing queue keeps its
    metadata, as in Zaqar."""
    validate.queue_name(name, ctx.limits)
    metadata = meta.check(document, ctx.limits) if document is not None else {}
    return await ctx.storage.queues.create(ctx.project, name, metadata)


async def get(ctx: Context, name: str) -> dict[str, Any]:
    """A queue's metadata with the reserved keys filled in. Queues are lazy:
    one that does not exist yet answers with the defaults."""
    validate.queue_name(name, ctx.limits)
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


async def delete(ctx: Context, name: str) -> None:
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


async def patch(ctx: Context, name: str, changes: Any) -> dict[str, Any]:
    """Apply JSON-patch changes to the metadata; all or none."""
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
    await ctx.storage.queues.set_metadata(ctx.project, name, updated)
    return meta.with_defaults(updated, ctx.limits)


async def list_queues(
    ctx: Context,
    *,
    marker: str | None,
    limit: int | None,
    detailed: bool,
    name: str | None,
    with_count: bool,
    metadata_filters: Mapping[str, str],
) -> dict[str, Any]:
    limits = ctx.limits
    size = validate.limit(limit, limits.default_queues_per_page, limits.max_queues_per_page,
                          "queues")
    filters = QueueFilters(name=name or None, metadata=tuple(sorted(metadata_filters.items())))
    records = await ctx.storage.queues.list(
        ctx.project, marker=marker, limit=size, detailed=detailed, filters=filters
    )
    queues = []
    for record in records:
        entry: dict[str, Any] = {"name": record.name, "href": queue_href(record.name)}
        if detailed:
            entry["metadata"] = record.metadata or {}
        queues.append(entry)
    query: dict[str, Any] = {"marker": records[-1].name if records else (marker or ""),
                             "limit": size}
    if detailed:
        query["detailed"] = "true"
    if name:
        query["name"] = name
    query.update(metadata_filters)
    result: dict[str, Any] = {"queues": queues, "links": []}
    if queues:
        result["links"] = [{"rel": "next", "href": QUEUES_PATH + "?" + urlencode(query)}]
    if with_count:
        result["count"] = await ctx.storage.queues.count(ctx.project, filters)
    return result


def format_stats(name: str, stats: QueueStats) -> dict[str, Any]:
    body: dict[str, Any] = {
        "claimed": stats.claimed,
        "free": stats.free,
        "total": stats.total,
    }
    for label, stat in (("oldest", stats.oldest), ("newest", stats.newest)):
        if stat is not None:
            body[label] = {
                "id": stat.id,
                "age": stat.age,
                "href": f"{queue_href(name)}/messages/{stat.id}",
                "created": _iso(stat.created),
            }
    return {"messages": body}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def stats(ctx: Context, name: str) -> dict[str, Any]:
    validate.queue_name(name, ctx.limits)
    return format_stats(name, await ctx.storage.queues.stats(ctx.project, name))


PURGEABLE = frozenset({"messages", "subscriptions"})


async def purge(ctx: Context, name: str, document: Any | None) -> None:
    """Remove the queue's messages (and later its subscriptions), keep it."""
    validate.queue_name(name, ctx.limits)
    kinds: Any = list(PURGEABLE)
    if document is not None:
        document = validate.json_object(document, "purge request")
        kinds = document.get("resource_types", kinds)
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise errors.InvalidBody("resource_types must be an array of strings.")
        unknown = sorted(set(kinds) - PURGEABLE)
        if unknown or not kinds:
            raise errors.ValidationFailed(
                "resource_types must name some of: messages, subscriptions."
            )
    if "messages" in kinds:
        await ctx.storage.queues.purge_messages(ctx.project, name)
