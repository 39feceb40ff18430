"""PostgreSQL queues: create, metadata, list, stats, purge."""

from __future__ import annotations

from typing import Any

import asyncpg

from tidings import errors
from tidings.storage.base import (
    MessageStat,
    QueueFilters,
    QueueRecord,
    QueueStats,
)
from tidings.storage.common.ids import IdCodec
from tidings.storage.common.metadata_cache import AnnouncedMetadataQueues
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import (
    PostgresCore,
    decode_json,
    encode_json,
    rowcount,
)
from tidings.storage.postgres.listener import decode_payload, encode_payload


def _filter_doc(metadata: dict[str, Any]) -> str:
    """The jsonb that listing filters match: top-level values as text.

    Strings stand for themselves, other values for their JSON text (1,
    true, {"a":1}); nulls and anything holding NUL, which jsonb cannot
    store, are left out and so never match.
    """
    doc: dict[str, str] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else encode_json(value).decode()
        if "\x00" in key or "\x00" in text:
            continue
        doc[key] = text
    return encode_json(doc).decode()


def _filter_args(filters: QueueFilters | None) -> tuple[str | None, str] | None:
    """(name substring, metadata jsonb) for QUEUE_LIST/QUEUE_COUNT, or None
    when the filters can match nothing (a NUL never is in a name or doc)."""
    if filters is None:
        return None, "{}"
    wanted = dict(filters.metadata)
    if len(wanted) < len(filters.metadata):
        # One key asked for two values at once: only equal values can match.
        values: dict[str, set[str]] = {}
        for key, value in filters.metadata:
            values.setdefault(key, set()).add(value)
        if any(len(v) > 1 for v in values.values()):
            return None
    texts = [filters.name or "", *wanted, *wanted.values()]
    if any("\x00" in text for text in texts):
        return None
    return filters.name or None, encode_json(wanted).decode()



class PostgresQueues(AnnouncedMetadataQueues):
    """Queues; their metadata cached per process and each change announced
    with a NOTIFY (storage/common/metadata_cache.py)."""

    d: PostgresCore

    def announcement(self, project: str, name: str) -> str:
        return encode_payload(project, name)

    def announced_queue(self, text: str) -> tuple[str, str]:
        return decode_payload(text)

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        queue_id = await self.d.fetchval(
            q.QUEUE_INSERT, project, name, encode_json(metadata), _filter_doc(metadata),
            self.d.clock(),
        )
        if queue_id is not None:
            await self._changed(project, name)
        return queue_id is not None

    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        async def load() -> dict[str, Any]:
            raw = await self.d.fetchval(q.QUEUE_METADATA, project, name)
            if raw is None:
                raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")
            return decode_json(raw)

        return await self.metadata_cache.read(project, name, load)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        try:
            status = await self.d.execute(
                q.QUEUE_SET_METADATA, project, name, encode_json(metadata),
                _filter_doc(metadata))
        finally:
            # Also after a failure: the write may have been made all the same.
            await self._changed(project, name)
        if rowcount(status) == 0:
            raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")

    async def delete(self, project: str, name: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            queue_id = await conn.fetchval(q.QUEUE_LOCK_FOR_DELETE, project, name)
            if queue_id is not None:
                await _empty(conn, queue_id)
                await conn.execute(q.QUEUE_DELETE, queue_id)
            # Its subscriptions too (they may exist without the queue's
            # row), then their deliveries: see queries.SUBSCRIPTION_DELETE.
            await conn.execute(q.SUBSCRIPTIONS_DELETE_OF_QUEUE, project, name)
            await conn.execute(q.DELIVERIES_DELETE_OF_QUEUE, project, name)

        try:
            await self.d.run(job, transaction=True)
        finally:
            await self._changed(project, name)

    async def _list(self, project: str, marker: str | None, limit: int, detailed: bool,
                    filters: QueueFilters | None) -> list[QueueRecord]:
        args = _filter_args(filters)
        if args is None:
            return []
        rows = await self.d.fetch(q.QUEUE_LIST, project, marker or "", detailed, *args, limit)
        return [
            QueueRecord(name=row[0], metadata=decode_json(row[1]) if detailed else None)
            for row in rows
        ]

    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        args = _filter_args(filters)
        if args is None:
            return 0
        return await self.d.fetchval(q.QUEUE_COUNT, project, *args)

    async def stats(self, project: str, name: str) -> QueueStats:
        now = self.d.clock()
        row = await self.d.fetchrow(q.QUEUE_STATS, project, name, now)
        if row is None or row["total"] == 0:
            return QueueStats()
        return QueueStats(
            claimed=row["claimed"],
            free=row["total"] - row["claimed"],
            oldest=_stat(self.d.ids, row["oldest_id"], row["oldest_created"], now),
            newest=_stat(self.d.ids, row["newest_id"], row["newest_created"], now),
        )

    async def purge_messages(self, project: str, name: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            # The row lock keeps posts out while the queue empties.
            queue_id = await conn.fetchval(q.QUEUE_LOCK, project, name)
            if queue_id is not None:
                await _empty(conn, queue_id)

        await self.d.run(job, transaction=True)


async def _empty(conn: asyncpg.Connection, queue_id: int) -> None:
    """Delete the queue's messages and claims (its row locked by the caller)."""
    await conn.execute(q.MESSAGES_DELETE_OF_QUEUE, queue_id)
    await conn.execute(q.CLAIMS_DELETE_OF_QUEUE, queue_id)


def _stat(ids: IdCodec, rowid: int | None, created: float | None, now: float
          ) -> MessageStat | None:
    if rowid is None or created is None:
        return None
    return MessageStat(id=ids.message_id(rowid), age=int(now - created), created=created)

