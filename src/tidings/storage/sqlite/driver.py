"""The SQLite driver: life cycle, connections, watches, health and gc.

The controllers (queues.py, messages.py, claims.py, subscriptions.py,
deliveries.py) hold one method per operation, on the helpers of core.py.

Writes go through the group-commit Writer; each write job runs whole,
with no await inside, so check-then-act sequences (claims, deletes with a
claim id) are atomic without locks. Short reads run on the event
loop's own connection: WAL readers never wait for the writer, and a point
read costs less than a hop to a thread would. Reads that may scan (stats,
counts) go to a worker thread so they can't stall the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

import msgspec

from tidings import errors
from tidings.config import DEAD_RETENTION
from tidings.storage import base
from tidings.storage.base import (
    Capability,
    Clock,
    check_secret_name,
    system_clock,
)
from tidings.storage.common.ids import IdCodec
from tidings.storage.common.opened import opened
from tidings.storage.common.url_options import UrlOptions
from tidings.storage.common.watch import EventWatch
from tidings.storage.sqlite import keyfile, schema
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.bus import bus_for
from tidings.storage.sqlite.claims import SqliteClaims
from tidings.storage.sqlite.deliveries import SqliteDeliveries
from tidings.storage.sqlite.messages import SqliteMessages
from tidings.storage.sqlite.queues import SqliteQueues
from tidings.storage.sqlite.subscriptions import SqliteSubscriptions
from tidings.storage.sqlite.writer import Writer

log = logging.getLogger(__name__)

SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
GC_BATCH = 5000
# After a write was refused for lack of space, the storage counts as out of
# space until its disk has this much free: room for a few of the largest
# posts (256 KiB) and the WAL pages and index updates they bring.
SPACE_MARGIN = 1024 * 1024
NO_SPACE_LEFT = ("The storage is out of space: writes are refused until space is freed on "
                 "the disk holding the database.")
# The bus channel telling other processes which queues a commit posted to.
POSTED_CHANNEL = "sqlite.posted"
_encode_posted = msgspec.msgpack.Encoder().encode
_decode_posted = msgspec.msgpack.Decoder(list[tuple[str, str]]).decode



class _Watch(EventWatch):
    """One waiter's view of a queue: set by the first post after it began."""


def _free_bytes(path: str) -> int:
    """Free bytes on the file system holding the database (0 if unknown)."""
    try:
        return shutil.disk_usage(Path(path).parent or ".").free
    except OSError:
        return 0


def _use_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch the file to WAL (it stays so). Switching needs a moment alone
    with the file, and SQLite does not wait for that, so processes starting
    together on a new file retry."""
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
        time.sleep(0.05)
    raise sqlite3.OperationalError("could not switch the database to WAL mode")



class SqliteDriver(base.DataDriver):
    name = "sqlite"
    capabilities = frozenset(
        {Capability.FIFO, Capability.CLAIMS, Capability.DURABILITY, Capability.AT_LEAST_ONCE}
    )

    def __init__(self, path: str, *, sync: str = "full", clock: Clock = system_clock,
                 dead_retention: float = DEAD_RETENTION) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sqlite sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.path = path
        self.sync = sync
        self.clock = clock
        self.dead_retention = dead_retention
        self._memory_secrets: dict[str, str] = {}
        # Watches of this process by (project, queue), and the queues the
        # transaction being committed posted to: woken once it is durable.
        self._watches: dict[tuple[str, str], set[_Watch]] = {}
        self.posted: set[tuple[str, str]] = set()
        self._hearing_posts: AsyncExitStack | None = None
        # Resolved once: the after-commit hook asks it on every post.
        self.bus = bus_for(os.path.realpath(path))
        self.writer = Writer(self._connect, on_commit=self._wake_watches)
        self._reader: sqlite3.Connection | None = None
        self._thread_conns = threading.local()
        self._ids: IdCodec | None = None
        self.queues, self.messages, self.claims = (SqliteQueues(self), SqliteMessages(self),
                                                   SqliteClaims(self))
        self.subscriptions, self.deliveries = SqliteSubscriptions(self), SqliteDeliveries(self)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = system_clock) -> SqliteDriver:
        """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
        ``sqlite://:memory:``-style URLs; ``?sync=full|normal|off`` (the
        registry adds the ``sqlite_sync`` setting when the URL names none)."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if path.startswith("/") and not parts.netloc:
            path = path[1:]  # sqlite:///rel -> rel ; sqlite:////abs -> /abs
        options = UrlOptions(parts.query, "SQLite")
        sync = options.take_text("sync", "full")
        dead_retention = options.take_seconds("dead_retention", DEAD_RETENTION)
        if not path:
            raise ValueError(f"no database path in {url!r}")
        return cls(path, sync=sync, clock=clock, dead_retention=dead_retention)

    # --- connections ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        _use_wal(conn)
        conn.execute(f"PRAGMA synchronous = {SYNC_MODES[self.sync]}")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA cache_size = -65536")
        # Reads map the file instead of copying pages: a reader whose cache
        # another connection's commit made stale re-reads pages cheaply.
        conn.execute("PRAGMA mmap_size = 268435456")
        return conn

    @property
    def ids(self) -> IdCodec:
        """The database's public id codec (read from it by open())."""
        return opened(self._ids)

    @property
    def reader(self) -> sqlite3.Connection:
        return opened(self._reader)

    def _thread_conn(self) -> sqlite3.Connection:
        conn = getattr(self._thread_conns, "conn", None)
        if conn is None:
            conn = self._thread_conns.conn = self._connect()
        return conn

    async def read_in_thread(self, fn: Any, *args: Any) -> Any:
        """Run a read that may scan many rows off the event loop."""
        try:
            return await asyncio.to_thread(lambda: fn(self._thread_conn(), *args))
        except sqlite3.Error as exc:
            raise errors.ServiceUnavailable("The storage could not be read.") from exc

    def read(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(self.reader, *args)
        except sqlite3.Error as exc:
            raise errors.ServiceUnavailable("The storage could not be read.") from exc

    # --- watches ----------------------------------------------------------

    def watch(self, project: str, queue: str) -> AbstractAsyncContextManager[base.PostWatch]:
        """Posts through this driver wake it at once, after their commit;
        posts by another process on the same file (``serve --workers N``)
        wake it through the bus, which carries the queues each commit
        posted to (POSTED_CHANNEL) to the processes that have a watch."""
        return self._watch(project, queue)

    @asynccontextmanager
    async def _watch(self, project: str, queue: str) -> AsyncIterator[_Watch]:
        if self._hearing_posts is None:
            # Before the caller's first read, so a post committed after it
            # by another process is heard.
            stack = AsyncExitStack()
            await stack.enter_async_context(
                self.bus.listen(POSTED_CHANNEL, self._heard_posts))
            self._hearing_posts = stack
        key = (project, queue)
        watch = _Watch()
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    def _wake_watches(self) -> None:
        """After a commit (or a failed one: a spurious wake-up only makes a
        waiter read again). Every post of the group is marked, even one
        made before a watch began: the watch may have begun while the
        post's COMMIT ran, after the waiter's read missed it."""
        if not self.posted:
            return
        posted, self.posted = self.posted, set()
        if self.bus.listeners_elsewhere(POSTED_CHANNEL):
            self.bus.publish_soon(POSTED_CHANNEL, _encode_posted(sorted(posted)))
        self._wake(posted)

    def _heard_posts(self, message: bytes) -> None:
        try:
            posted = _decode_posted(message)
        except msgspec.DecodeError:
            log.warning("sqlite: ignoring a malformed notice of posts on the bus")
            return
        self._wake(posted)

    def _wake(self, posted: Iterable[tuple[str, str]]) -> None:
        if not self._watches:
            return
        for key in posted:
            for watch in self._watches.get(key, ()):
                watch.event.set()

    # --- the bus ----------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> int | None:
        return await self.bus.publish(channel, message)

    def listen(self, channel: str, receive: base.Receive) -> AbstractAsyncContextManager[None]:
        return self.bus.listen(channel, receive)

    async def stored_secret(self, name: str) -> bytes:
        check_secret_name(name)
        if self.path == ":memory:" or self.path.startswith("file:"):
            # No file to keep it beside: it lives as long as this process.
            key = self._memory_secrets.setdefault(name, secrets.token_hex(32))
        else:
            key = await asyncio.to_thread(keyfile.read_or_create,
                                          keyfile.key_path(self.path, name))
        return key.encode()

    # --- life cycle -------------------------------------------------------

    def _make_directory(self) -> None:
        directory = Path(self.path).parent
        if str(directory) not in ("", "."):
            os.makedirs(directory, exist_ok=True)

    async def open(self) -> None:
        # The schema is upgraded whatever migrate_on_open says: the file is
        # this process's to shape, and the upgrade is local and quick.
        self._make_directory()
        conn = self._connect()
        try:
            schema.upgrade(conn)
            self._ids = IdCodec.from_scheme(*conn.execute(q.ID_SCHEME).fetchone())
        finally:
            conn.close()
        self._reader = self._connect()
        self.writer.start()

    async def migrate(self) -> int:
        self._make_directory()
        conn = self._connect()
        try:
            return schema.upgrade(conn)
        finally:
            conn.close()

    async def schema_status(self) -> base.SchemaStatus:
        if self.path == ":memory:" or not Path(self.path).exists():
            return base.SchemaStatus(0, schema.VERSION)
        try:
            # Read-only: a check neither creates the file nor switches it to WAL.
            conn = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode=ro", uri=True)
            try:
                found = schema.stored_version(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise errors.ServiceUnavailable(
                f"cannot read the SQLite database {self.path}: {exc}") from None
        return base.SchemaStatus(found, schema.VERSION)

    async def close(self) -> None:
        if self._hearing_posts is not None:
            stack, self._hearing_posts = self._hearing_posts, None
            await stack.aclose()
        await self.writer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def is_alive(self) -> bool:
        """Readable, and not out of space: after a write was refused for
        lack of space, alive again once the disk has SPACE_MARGIN free."""
        try:
            self.reader.execute("SELECT 1").fetchone()
        except (sqlite3.Error, errors.ServiceUnavailable):
            return False
        if self.writer.out_of_space and _free_bytes(self.path) >= SPACE_MARGIN:
            self.writer.out_of_space = False
            log.warning("sqlite: the disk has room again: writes should succeed")
        return not self.writer.out_of_space

    def problem(self) -> str | None:
        return NO_SPACE_LEFT if self.writer.out_of_space else None

    async def health(self) -> dict[str, Any]:
        def counts(conn: sqlite3.Connection, now: float) -> list[tuple[str, str, int]]:
            return conn.execute(q.MESSAGE_COUNTS_BY_QUEUE, (now, 1000)).fetchall()

        rows = await self.read_in_thread(counts, self.clock())
        details: dict[str, Any] = {
            "storage_reachable": await self.is_alive(),
            "path": self.path,
            "sync": self.sync,
            "message_counts": [
                {"project": project, "queue": name, "messages": total}
                for project, name, total in rows
            ],
        }
        if self.problem() is not None:
            details["problem"] = self.problem()
        return details

    async def gc(self) -> base.GcResult:
        now = self.clock()

        dead_before = now - self.dead_retention

        def collect(conn: sqlite3.Connection) -> base.GcResult:
            messages = conn.execute(q.GC_EXPIRED_MESSAGES, (now, GC_BATCH)).rowcount
            claims = 0
            for (claim_id,) in conn.execute(q.GC_EXPIRED_CLAIMS, (now, GC_BATCH)).fetchall():
                conn.execute(q.CLAIM_RELEASE_MESSAGES, (claim_id,))
                conn.execute(q.CLAIM_DELETE, (claim_id,))
                claims += 1
            subscriptions = deliveries = 0
            expired = conn.execute(q.GC_EXPIRED_SUBSCRIPTIONS, (now, GC_BATCH)).fetchall()
            for (rowid,) in expired:
                deliveries += conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTION, (rowid,)).rowcount
                subscriptions += conn.execute(q.SUBSCRIPTION_DELETE, (rowid,)).rowcount
            deliveries += conn.execute(q.GC_OLD_DEAD_DELIVERIES, (dead_before, GC_BATCH)).rowcount
            return base.GcResult(messages, claims, subscriptions, deliveries)

        total = base.GcResult()
        while True:
            # Batches keep each transaction short, so requests keep flowing.
            removed = await self.writer.run(collect, heavy=True)
            total += removed
            if removed.total < GC_BATCH:
                return total



__all__ = ["SqliteDriver"]
