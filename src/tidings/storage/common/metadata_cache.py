"""The per-process cache of queue metadata, one rule for every driver.

Every post and claim reads its queue's metadata (for the queue's limits
and dead-letter policy): a read from the storage each time costs SQLite a
query and Redis a round trip. So a driver keeps what it read for
``METADATA_CACHE_SECONDS``. Its own changes drop the entry once committed;
another process's changes (``serve --workers N``, or several servers on one
Redis) are seen within ``METADATA_CACHE_SECONDS`` at worst — sooner where
the driver hears of them over its bus (Redis publishes each change).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from tidings import errors
from tidings.shared_calls import SharedCalls
from tidings.storage import base

# The documented bound on how stale another process's metadata may be.
METADATA_CACHE_SECONDS = 1.0
# Entries kept at most; the oldest goes first.
METADATA_CACHE_SIZE = 10_000
# The bus channel on which the drivers whose processes share a server
# (Redis, PostgreSQL) announce each change of a queue's metadata, so the
# other processes drop their copy at once instead of after
# METADATA_CACHE_SECONDS.
METADATA_CHANNEL = "queue-metadata"


class MetadataCache:
    """(project, queue) -> metadata, each entry kept for ``seconds``.

    A read that started before a ``forget`` of the same queue must not put
    back what it read (it may be the value the change replaced), so a
    reader takes a ``ticket`` before it reads and ``put`` drops a value
    whose ticket a forget has overtaken.
    """

    def __init__(self, seconds: float = METADATA_CACHE_SECONDS,
                 size: int = METADATA_CACHE_SIZE,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.size = size
        self.monotonic = monotonic
        # (project, name) -> (monotonic time read, metadata)
        self._entries: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._forgets = 0
        # The reads in flight (see read): one per queue however many wait.
        self._reads: SharedCalls[tuple[str, str], dict[str, Any]] = SharedCalls()

    def get(self, project: str, name: str) -> dict[str, Any] | None:
        """A copy of the cached metadata (callers may change it), or None."""
        cached = self._entries.get((project, name))
        if cached is None:
            return None
        if self.monotonic() - cached[0] >= self.seconds:
            del self._entries[(project, name)]
            return None
        return dict(cached[1])

    async def read(self, project: str, name: str,
                   load: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """The cached metadata, or what ``load`` reads from the storage.

        When an entry expires under load, every request of that queue
        misses at once; they share one ``load`` instead of each spending
        a round trip (and a pooled connection) on the same row.
        """
        cached = self.get(project, name)
        if cached is not None:
            return cached
        key = (project, name)
        return dict(await self._reads.run(key, lambda: self._load(key, load)))

    async def _load(self, key: tuple[str, str],
                    load: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        ticket = self.ticket()
        metadata = await load()
        self.put(key[0], key[1], metadata, ticket)
        return metadata

    def ticket(self) -> int:
        """Taken before reading the storage; handed back to ``put``."""
        return self._forgets

    def put(self, project: str, name: str, metadata: dict[str, Any], ticket: int) -> None:
        if ticket != self._forgets:
            return  # a change was heard while this was read: it may predate it
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[(project, name)] = (self.monotonic(), dict(metadata))

    def forget(self, project: str, name: str) -> None:
        self._forgets += 1
        self._entries.pop((project, name), None)
        # A read in flight may predate the change: later readers read anew.
        self._reads.forget((project, name))

    def clear(self) -> None:
        """Forget everything: when changes may have gone unheard."""
        self._forgets += 1
        self._entries.clear()
        self._reads.forget_all()


class AnnouncedMetadataQueues(base.QueueController):
    """The queue controller of a driver whose processes share a server
    (Redis, PostgreSQL): every post and claim reads its queue's metadata,
    a round trip each, so it is cached per process; a change made by any
    process is announced on the driver's bus and forgotten everywhere. The
    driver says how a queue is named in an announcement."""

    def __init__(self, driver: Any) -> None:
        super().__init__(driver)
        self.metadata_cache = MetadataCache()

    @abstractmethod
    def announcement(self, project: str, name: str) -> str:
        """The queue as the text of an announcement."""

    @abstractmethod
    def announced_queue(self, text: str) -> tuple[str, str]:
        """(project, name) of an announcement's text."""

    def heard_change(self, message: bytes) -> None:
        """A bus message on METADATA_CHANNEL: forget that queue's entry."""
        self.metadata_cache.forget(*self.announced_queue(message.decode()))

    async def _changed(self, project: str, name: str) -> None:
        """Forget here, and tell the other processes, after the change
        committed. A lost announcement only delays them, to
        METADATA_CACHE_SECONDS: not worth failing the change made."""
        self.metadata_cache.forget(project, name)
        try:
            await self.d.publish(METADATA_CHANNEL, self.announcement(project, name).encode())
        except errors.ServiceUnavailable:
            pass  # logged by the driver
