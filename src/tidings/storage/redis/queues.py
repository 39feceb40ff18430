"""Queues: the queue's own keys are the truth; the per-project index (a
sorted set of names, listed lexicographically) is written after them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from tidings import errors
from tidings.storage.base import MessageStat, QueueFilters, QueueRecord, QueueStats
from tidings.storage.common.metadata_cache import AnnouncedMetadataQueues
from tidings.storage.redis import scripts
from tidings.storage.redis.keys import MESSAGE_SUFFIXES, QUEUE_SUFFIXES, SEQUENCE_GRACE
from tidings.storage.redis.messages import decode_record, new_salt

if TYPE_CHECKING:
    from tidings.storage.redis.core import RedisCore

_encode = msgspec.json.encode
_decode = msgspec.json.decode
# Filtered listings read names (and metadata) this many at a time.
LIST_CHUNK = 200


def _as_text(value: Any) -> str | None:
    """A metadata value as the text a filter compares with, the way the
    SQLite driver sees it (json_each + CAST AS TEXT)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return _encode(value).decode()


def _matches(name: str, metadata: dict[str, Any] | None, filters: QueueFilters) -> bool:
    if filters.name and filters.name not in name:
        return False
    for key, wanted in filters.metadata:
        if metadata is None or key not in metadata or _as_text(metadata[key]) != wanted:
            return False
    return True


class RedisQueues(AnnouncedMetadataQueues):
    """Queues; their metadata cached per process and each change announced
    on the bus (storage/common/metadata_cache.py)."""

    d: RedisCore

    def announcement(self, project: str, name: str) -> str:
        return self.d.keys.member(project, name)

    def announced_queue(self, text: str) -> tuple[str, str]:
        return self.d.keys.names_of_member(text)

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        queue_base = self.d.keys.queue(project, name)
        created = await self.d.run(
            scripts.create_queue, [queue_base],
            [_encode(metadata), repr(self.d.clock()), new_salt()],
        )
        # Also when it existed: repairs an index write a crash cut off.
        await self.d.index_queue(project, name)
        if created == 1:
            await self._changed(project, name)
        return created == 1

    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        cached = self.metadata_cache.get(project, name)
        if cached is not None:
            return cached
        ticket = self.metadata_cache.ticket()
        async with self.d.bounded():
            raw = await self.d.client.hget(self.d.keys.queue(project, name) + ":q", "meta")
        if raw is None:
            raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")
        metadata = _decode(raw)
        self.metadata_cache.put(project, name, metadata, ticket)
        return metadata

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        queue_base = self.d.keys.queue(project, name)
        try:
            if not await self.d.run(scripts.set_metadata, [queue_base], [_encode(metadata)]):
                raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")
        finally:
            # Also after a failure: the write may have been made all the same.
            await self._changed(project, name)

    async def delete(self, project: str, name: str) -> None:
        """With its subscriptions and their deliveries (the outbox hint and
        the subscribed set catch up lazily: lease and gc drop stale ones)."""
        # The index first, so no listing shows a queue that is going away.
        async with self.d.bounded():
            async with self.d.client.pipeline(transaction=False) as pipe:
                pipe.zrem(self.d.keys.project_index(project), name)
                pipe.srem(self.d.keys.all_queues, self.d.keys.member(project, name))
                await pipe.execute()
        try:
            await self.d.run(
                scripts.delete_queue, [self.d.keys.queue(project, name)],
                [SEQUENCE_GRACE, 1, *QUEUE_SUFFIXES],
            )
        finally:
            await self._changed(project, name)

    async def _names(self, project: str, marker: str | None, limit: int) -> list[str]:
        low = b"(" + marker.encode() if marker else b"-"
        async with self.d.bounded():
            raw = await self.d.client.zrangebylex(
                self.d.keys.project_index(project), low, b"+", start=0, num=limit
            )
        return [name.decode() for name in raw]

    async def _metadata(self, project: str, names: list[str]) -> list[dict[str, Any] | None]:
        """Each queue's metadata; None for one that is gone."""
        if not names:
            return []
        async with self.d.bounded():
            async with self.d.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hget(self.d.keys.queue(project, name) + ":q", "meta")
                raw = await pipe.execute()
        return [None if r is None else _decode(r) for r in raw]

    async def _scan(self, project: str, marker: str | None, limit: int | None,
                    filters: QueueFilters | None, detailed: bool) -> list[QueueRecord]:
        """Index order after ``marker``, filtered; reads metadata only when
        a filter or the caller needs it."""
        need_metadata = detailed or bool(filters and filters.metadata)
        found: list[QueueRecord] = []
        while limit is None or len(found) < limit:
            chunk = LIST_CHUNK if filters or limit is None else limit - len(found)
            names = await self._names(project, marker, chunk)
            if not names:
                break
            marker = names[-1]
            metas = await self._metadata(project, names) if need_metadata else [None] * len(names)
            for name, meta in zip(names, metas):
                if need_metadata and meta is None:
                    continue  # deleted meanwhile
                if filters and not _matches(name, meta, filters):
                    continue
                found.append(QueueRecord(name=name, metadata=meta if detailed else None))
                if limit is not None and len(found) >= limit:
                    break
            if len(names) < chunk:
                break
        return found

    async def _list(self, project: str, marker: str | None, limit: int, detailed: bool,
                    filters: QueueFilters | None) -> list[QueueRecord]:
        return await self._scan(project, marker, limit, filters, detailed)

    async def count(self, project: str, filters: QueueFilters | None = None) -> int:
        if filters is None or (not filters.name and not filters.metadata):
            async with self.d.bounded():
                return int(await self.d.client.zcard(self.d.keys.project_index(project)))
        return len(await self._scan(project, None, None, filters, False))

    async def stats(self, project: str, name: str) -> QueueStats:
        now = self.d.clock()
        total, claimed, oldest_id, oldest, newest_id, newest = await self.d.run(
            scripts.stats, [self.d.keys.queue(project, name)], [repr(now)]
        )
        if not total:
            return QueueStats()
        return QueueStats(
            claimed=int(claimed),
            free=int(total) - int(claimed),
            oldest=_stat(oldest_id, oldest, now),
            newest=_stat(newest_id, newest, now),
        )

    async def purge_messages(self, project: str, name: str) -> None:
        await self.d.run(
            scripts.delete_queue, [self.d.keys.queue(project, name)], [0, 0, *MESSAGE_SUFFIXES]
        )


def _stat(message_id: bytes | None, raw: bytes | None, now: float) -> MessageStat | None:
    if message_id is None or raw is None:
        return None
    created = decode_record(raw)[0]
    return MessageStat(id=message_id.decode(), age=int(now - created), created=created)
