"""SQLite queues: create, metadata (cached), list, stats, purge."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from tidings import errors
from tidings.storage import base
from tidings.storage.base import (
    MessageStat,
    QueueFilters,
    QueueRecord,
    QueueStats,
)
from tidings.storage.common.ids import IdCodec
from tidings.storage.common.metadata_cache import METADATA_CACHE_SECONDS, MetadataCache
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.core import (
    SqliteCore,
    decode_json,
    encode_json,
    find_queue,
)


class SqliteQueues(base.QueueController):
    """Queues. Every post and claim reads its queue's metadata (for the
    queue's limits), so the metadata is cached: changes made through this
    driver drop their entry once committed; changes by another process on
    the same file (``serve --workers N``) are seen within
    ``METADATA_CACHE_SECONDS`` (storage/common/metadata_cache.py)."""

    d: SqliteCore

    def __init__(self, driver: SqliteCore) -> None:
        super().__init__(driver)
        self.monotonic = time.monotonic
        self.metadata_cache = MetadataCache(METADATA_CACHE_SECONDS,
                                            monotonic=lambda: self.monotonic())

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        now = self.d.clock()
        text = encode_json(metadata).decode()

        def job(conn: sqlite3.Connection) -> bool:
            return conn.execute(q.QUEUE_INSERT, (project, name, text, now)).rowcount == 1

        try:
            return await self.d.writer.run(job)
        finally:
            self.forget_metadata(project, name)

    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        cached = self.metadata_cache.get(project, name)
        if cached is not None:
            return cached
        ticket = self.metadata_cache.ticket()
        row = self.d.read(lambda c: c.execute(q.QUEUE_METADATA, (project, name)).fetchone())
        if row is None:
            raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")
        metadata = decode_json(row[0])
        self.metadata_cache.put(project, name, metadata, ticket)
        return metadata

    def forget_metadata(self, project: str, name: str) -> None:
        self.metadata_cache.forget(project, name)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        text = encode_json(metadata).decode()

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(q.QUEUE_SET_METADATA, (text, project, name)).rowcount == 0:
                raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")

        try:
            await self.d.writer.run(job)
        finally:
            self.forget_metadata(project, name)

    async def delete(self, project: str, name: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            queue_id = find_queue(conn, project, name)
            if queue_id is not None:
                _empty(conn, queue_id)
                conn.execute(q.QUEUE_DELETE, (queue_id,))
            # Subscriptions hang on the name, with or without a queue row.
            conn.execute(q.DELIVERIES_DELETE_OF_QUEUE, (project, name))
            conn.execute(q.SUBSCRIPTIONS_DELETE_OF_QUEUE, (project, name))

        try:
            await self.d.writer.run(job, heavy=True)
        finally:
            self.forget_metadata(project, name)

    @staticmethod
    def _filter_sql(filters: QueueFilters | None) -> tuple[str, list[Any]]:
        if filters is None:
            return "", []
        sql, args = "", []
        if filters.name:
            sql += q.QUEUE_FILTER_NAME
            args.append(filters.name)
        for key, value in filters.metadata:
            sql += q.QUEUE_FILTER_METADATA
            args += [key, value]
        return sql, args

    async def _list(self, project: str, marker: str | None, limit: int, detailed: bool,
                    filters: QueueFilters | None) -> list[QueueRecord]:
        where, args = self._filter_sql(filters)
        sql = q.QUEUE_LIST.format(detail=", metadata" if detailed else "", filters=where)
        params = (project, marker or "", *args, limit)
        rows = self.d.read(lambda c: c.execute(sql, params).fetchall())
        return [
            QueueRecord(name=row[0], metadata=decode_json(row[1]) if detailed else None)
            for row in rows
        ]

    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        where, args = self._filter_sql(filters)
        sql = q.QUEUE_COUNT.format(filters=where)
        return await self.d.read_in_thread(
            lambda c: c.execute(sql, (project, *args)).fetchone()[0]
        )

    async def stats(self, project: str, name: str) -> QueueStats:
        now = self.d.clock()

        def read(conn: sqlite3.Connection) -> QueueStats:
            queue_id = find_queue(conn, project, name)
            if queue_id is None:
                return QueueStats()
            conn.execute("BEGIN")  # one snapshot for all three reads
            try:
                total, claimed = conn.execute(q.STATS_COUNTS, (now, queue_id, now)).fetchone()
                if total == 0:
                    return QueueStats()
                oldest = conn.execute(q.STATS_OLDEST, (queue_id, now)).fetchone()
                newest = conn.execute(q.STATS_NEWEST, (queue_id, now)).fetchone()
            finally:
                conn.execute("COMMIT")
            return QueueStats(
                claimed=claimed,
                free=total - claimed,
                oldest=_stat(self.d.ids, oldest, now),
                newest=_stat(self.d.ids, newest, now),
            )

        return await self.d.read_in_thread(read)

    async def purge_messages(self, project: str, name: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            queue_id = find_queue(conn, project, name)
            if queue_id is not None:
                _empty(conn, queue_id)

        await self.d.writer.run(job, heavy=True)


def _empty(conn: sqlite3.Connection, queue_id: int) -> None:
    """Delete the queue's messages and claims."""
    conn.execute(q.MESSAGES_DELETE_OF_QUEUE, (queue_id,))
    conn.execute(q.CLAIMS_DELETE_OF_QUEUE, (queue_id,))


def _stat(ids: IdCodec, row: tuple[int, float] | None, now: float) -> MessageStat | None:
    if row is None:
        return None
    return MessageStat(id=ids.message_id(row[0]), age=int(now - row[1]), created=row[1])

