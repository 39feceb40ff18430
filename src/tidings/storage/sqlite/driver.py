"""The SQLite driver.

Writes go through the group-commit Writer; each write job runs whole,
with no await inside, so check-then-act sequences (claims, deletes with a
claim id) are atomic without locks. Short reads run on the event
loop's own connection: WAL readers never wait for the writer, and a point
read costs less than a hop to a thread would. Reads that may scan (stats,
counts) go to a worker thread so they can't stall the loop.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import unquote, urlsplit

import msgspec

from tidings import errors
from tidings.config import DEAD_RETENTION
from tidings.storage import base
from tidings.storage.base import (
    Capability,
    Claim,
    ClaimResult,
    Clock,
    DeadLetterPolicy,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Message,
    MessageStat,
    NewMessage,
    NewSubscription,
    QueueFilters,
    QueueRecord,
    QueueStats,
    Subscription,
    check_secret_name,
    system_clock,
)
from tidings.storage.common.claims import check_delete_allowed
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.common.metadata_cache import METADATA_CACHE_SECONDS, MetadataCache
from tidings.storage.common.rows import message_from_row
from tidings.storage.common.url_options import UrlOptions
from tidings.storage.common.watch import EventWatch
from tidings.storage.sqlite import keyfile, schema
from tidings.storage.sqlite import queries as q
from tidings.storage.sqlite.bus import bus_for
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
# Rows per INSERT statement (six parameters each, far below SQLite's cap).
INSERT_CHUNK = 500
# How long gc keeps a dead delivery for inspection.
_encode = msgspec.json.encode
_decode = msgspec.json.decode
# The bus channel telling other processes which queues a commit posted to.
POSTED_CHANNEL = "sqlite.posted"
_encode_posted = msgspec.msgpack.Encoder().encode
_decode_posted = msgspec.msgpack.Decoder(list[tuple[str, str]]).decode


def _new_token() -> int:
    return secrets.randbits(32)


_KIND_CODES = {DeliveryKind.MESSAGE: 0, DeliveryKind.CONFIRMATION: 1}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_STATUS_CODES = {DeliveryStatus.PENDING: 0, DeliveryStatus.DEAD: 1}
_STATUSES = {code: status for status, code in _STATUS_CODES.items()}


def _subscription(ids: IdCodec, row: tuple[Any, ...], now: float) -> Subscription:
    rowid, token, queue, subscriber, ttl, created, options, confirmed = row
    return Subscription(
        id=ids.public_id(IdKind.SUBSCRIPTION, rowid, token),
        queue=queue,
        subscriber=subscriber,
        ttl=ttl,
        age=int(now - created),
        options=_decode(options),
        confirmed=bool(confirmed),
    )


def _delivery(ids: IdCodec, row: tuple[Any, ...]) -> Delivery:
    (rowid, token, kind, message, ttl, payload, attempts, created, status, last_error,
     sub_rowid, sub_token, project, queue, subscriber, options) = row[:16]
    if message is not None:
        # A message delivery stores the body as posted; the rest is rebuilt.
        content = {"id": ids.message_id(message), "body": _decode(payload), "ttl": ttl}
    else:
        content = _decode(payload)
    return Delivery(
        id=ids.public_id(IdKind.DELIVERY, rowid, token),
        project=project,
        queue=queue,
        subscription_id=ids.public_id(IdKind.SUBSCRIPTION, sub_rowid, sub_token),
        subscriber=subscriber,
        options=_decode(options),
        kind=_KINDS[kind],
        payload=content,
        attempts=attempts,
        created=created,
        status=_STATUSES[status],
        last_error=last_error,
    )


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


def _inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT of ``cursor`` wrote (these inserts
    always write one: the writer holds the write lock)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise sqlite3.OperationalError("an INSERT wrote no row")
    return rowid


def _queue_id(conn: sqlite3.Connection, project: str, name: str) -> int | None:
    row = conn.execute(q.QUEUE_ID, (project, name)).fetchone()
    return row[0] if row else None


def _ensure_queue(conn: sqlite3.Connection, project: str, name: str, now: float) -> int:
    queue_id = _queue_id(conn, project, name)
    if queue_id is None:
        # The writer holds the write lock, so the insert cannot conflict.
        queue_id = _inserted(conn.execute(q.QUEUE_INSERT, (project, name, "{}", now)))
    return queue_id


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
        self._posted: set[tuple[str, str]] = set()
        self._hearing_posts: AsyncExitStack | None = None
        # Resolved once: the after-commit hook asks it on every post.
        self.bus = bus_for(os.path.realpath(path))
        self.writer = Writer(self._connect, on_commit=self._wake_watches)
        self._reader: sqlite3.Connection | None = None
        self._thread_conns = threading.local()
        self._ids: IdCodec | None = None
        self.queues = SqliteQueues(self)
        self.messages = SqliteMessages(self)
        self.claims = SqliteClaims(self)
        self.subscriptions = SqliteSubscriptions(self)
        self.deliveries = SqliteDeliveries(self)

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
        if self._ids is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        return self._ids

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        return self._reader

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
        if not self._posted:
            return
        posted, self._posted = self._posted, set()
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

    async def open(self) -> None:
        directory = Path(self.path).parent
        if str(directory) not in ("", "."):
            os.makedirs(directory, exist_ok=True)
        conn = self._connect()
        try:
            schema.upgrade(conn)
            self._ids = IdCodec.from_scheme(*conn.execute(q.ID_SCHEME).fetchone())
        finally:
            conn.close()
        self._reader = self._connect()
        self.writer.start()

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


class SqliteQueues(base.QueueController):
    """Queues. Every post and claim reads its queue's metadata (for the
    queue's limits), so the metadata is cached: changes made through this
    driver drop their entry once committed; changes by another process on
    the same file (``serve --workers N``) are seen within
    ``METADATA_CACHE_SECONDS`` (storage/common/metadata_cache.py)."""

    def __init__(self, driver: SqliteDriver) -> None:
        self.d = driver
        self.monotonic = time.monotonic
        self.metadata_cache = MetadataCache(METADATA_CACHE_SECONDS,
                                            monotonic=lambda: self.monotonic())

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        now = self.d.clock()
        text = _encode(metadata).decode()

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
        metadata = _decode(row[0])
        self.metadata_cache.put(project, name, metadata, ticket)
        return metadata

    def forget_metadata(self, project: str, name: str) -> None:
        self.metadata_cache.forget(project, name)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        text = _encode(metadata).decode()

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(q.QUEUE_SET_METADATA, (text, project, name)).rowcount == 0:
                raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")

        try:
            await self.d.writer.run(job)
        finally:
            self.forget_metadata(project, name)

    async def delete(self, project: str, name: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            queue_id = _queue_id(conn, project, name)
            if queue_id is not None:
                conn.execute(q.MESSAGES_DELETE_OF_QUEUE, (queue_id,))
                conn.execute(q.CLAIMS_DELETE_OF_QUEUE, (queue_id,))
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

    async def list(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        detailed: bool,
        filters: QueueFilters | None = None,
    ) -> list[QueueRecord]:
        where, args = self._filter_sql(filters)
        sql = q.QUEUE_LIST.format(detail=", metadata" if detailed else "", filters=where)
        params = (project, marker or "", *args, limit)
        rows = self.d.read(lambda c: c.execute(sql, params).fetchall())
        return [
            QueueRecord(name=row[0], metadata=_decode(row[1]) if detailed else None)
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
            queue_id = _queue_id(conn, project, name)
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
            queue_id = _queue_id(conn, project, name)
            if queue_id is not None:
                conn.execute(q.MESSAGES_DELETE_OF_QUEUE, (queue_id,))
                conn.execute(q.CLAIMS_DELETE_OF_QUEUE, (queue_id,))

        await self.d.writer.run(job, heavy=True)


def _stat(ids: IdCodec, row: tuple[int, float] | None, now: float) -> MessageStat | None:
    if row is None:
        return None
    return MessageStat(id=ids.message_id(row[0]), age=int(now - row[1]), created=row[1])


class SqliteMessages(base.MessageController):
    def __init__(self, driver: SqliteDriver) -> None:
        self.d = driver

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        now = self.d.clock()
        # Encode outside the writer thread: it is the one serial resource.
        rows = [
            (_encode(m.body), now, now + m.ttl, now + m.delay, client_id) for m in messages
        ]
        key = (project, queue)
        driver = self.d

        def job(conn: sqlite3.Connection) -> list[str]:
            ids = _insert_messages(driver.ids, conn, project, queue, rows,
                                   [m.ttl for m in messages], now)
            driver._posted.add(key)
            return ids

        return await self.d.writer.run(job)

    async def move(
        self, project: str, src: str, dst: str, ids: Sequence[str], claim_id: str,
        ttl: int | None = None,
    ) -> list[str]:
        """Atomic: the copies and the deletes are one write job (one
        transaction), so a crash leaves either both or neither."""
        rowids = self.d.ids.parse_message_ids(ids)
        now = self.d.clock()
        driver = self.d

        def job(conn: sqlite3.Connection) -> list[str]:
            src_id = _queue_id(conn, project, src)
            if src_id is None or not rowids:
                return []
            rows, ttls, moved = [], [], []
            for rowid in rowids:
                row = conn.execute(q.MESSAGE_FOR_MOVE, (rowid, src_id, now)).fetchone()
                if row is None or row[4] != claim_id or row[5] <= now:
                    continue  # gone, or not (or no longer) under this claim
                body, created, expires, client_id = row[:4]
                life = ttl if ttl is not None else max(1, round(expires - created))
                rows.append((body, now, now + life, now, client_id))
                ttls.append(life)
                moved.append((rowid,))
            if not rows:
                return []
            new_ids = _insert_messages(driver.ids, conn, project, dst, rows, ttls, now)
            conn.executemany(q.MESSAGE_DELETE, moved)
            driver._posted.add((project, dst))
            return new_ids

        return await self.d.writer.run(job)

    async def list(
        self,
        project: str,
        queue: str,
        *,
        marker: str | None,
        limit: int,
        client_id: str | None,
        echo: bool,
        include_claimed: bool,
        include_delayed: bool,
    ) -> tuple[list[Message], str | None]:
        now = self.d.clock()
        after = self.d.ids.marker(IdKind.MESSAGE, marker)
        filters, args = "", list[Any]()
        if not include_claimed:
            filters += q.MESSAGE_PAGE_NOT_CLAIMED
            args.append(now)
        if not include_delayed:
            filters += q.MESSAGE_PAGE_NOT_DELAYED
            args.append(now)
        if not echo and client_id is not None:
            filters += q.MESSAGE_PAGE_NOT_OWN
            args.append(client_id)
        sql = q.MESSAGE_PAGE.format(filters=filters)
        params = (project, queue, after, now, *args, limit)
        rows = self.d.read(lambda c: c.execute(sql, params).fetchall())
        page = [message_from_row(self.d.ids, row, now) for row in rows]
        return page, (self.d.ids.message_id(rows[-1][0]) if rows else None)

    async def get(self, project: str, queue: str, message_id_: str) -> Message:
        rowid = self.d.ids.parse_message_id(message_id_)
        now = self.d.clock()
        row = None
        if rowid is not None:
            row = self.d.read(
                lambda c: c.execute(q.MESSAGE_GET, (rowid, now, project, queue)).fetchone()
            )
        if row is None:
            raise errors.MessageDoesNotExist(
                f"Message {message_id_} does not exist in queue {queue}."
            )
        return message_from_row(self.d.ids, row, now)

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        now = self.d.clock()
        found = []
        for text in dict.fromkeys(ids):
            rowid = self.d.ids.parse_message_id(text)
            if rowid is None:
                continue
            row = self.d.read(
                lambda c: c.execute(q.MESSAGE_GET, (rowid, now, project, queue)).fetchone()
            )
            if row is not None:
                found.append(message_from_row(self.d.ids, row, now))
        return found

    async def delete(
        self, project: str, queue: str, message_id_: str, claim_id: str | None
    ) -> None:
        await self.bulk_delete(
            project, queue, [message_id_], None if claim_id is None else [claim_id],
            single=True,
        )

    async def bulk_delete(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        *,
        single: bool = False,
    ) -> None:
        rowids = self.d.ids.parse_message_ids(ids)
        allowed = set(claim_ids or ())
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> None:
            queue_id = _queue_id(conn, project, queue)
            if queue_id is None:
                return
            doomed = []
            for rowid in rowids:
                row = conn.execute(q.MESSAGE_CLAIM_STATE, (rowid, queue_id, now)).fetchone()
                if row is None:
                    continue  # deleting what is gone is not an error
                check_delete_allowed(row[0], row[1], allowed, claim_ids is not None and single, now)
                doomed.append((rowid,))
            conn.executemany(q.MESSAGE_DELETE, doomed)

        await self.d.writer.run(job)

    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> list[Message]:
            queue_id = _queue_id(conn, project, queue)
            if queue_id is None:
                return []
            rows = conn.execute(q.MESSAGES_CLAIMABLE, (queue_id, now, now, now, limit)).fetchall()
            conn.executemany(q.MESSAGE_DELETE, [(row[0],) for row in rows])
            return [message_from_row(self.d.ids, row, now) for row in rows]

        return await self.d.writer.run(job)


def _insert_messages(
    ids: IdCodec,
    conn: sqlite3.Connection, project: str, queue: str, rows: list[tuple[Any, ...]],
    ttls: list[int], now: float,
) -> list[str]:
    """Append rows (body, created, expires, available, client_id) to the
    queue, creating it if needed, with their notifications; the new ids."""
    queue_id = _ensure_queue(conn, project, queue, now)
    # One multi-row INSERT per chunk rather than executemany's statement
    # per row: a third less time for a post of ten.
    last = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        last = _inserted(conn.execute(q.message_insert(len(chunk)),
                            [value for row in chunk for value in (queue_id, *row)]))
    # One writer, one transaction: the ids of this batch are consecutive.
    first = last - len(rows) + 1
    # The outbox, in the same transaction: one indexed lookup, which
    # finds nobody on most queues.
    subscribers = conn.execute(q.SUBSCRIPTIONS_TO_NOTIFY, (project, queue, now)).fetchall()
    if subscribers:
        token = _new_token()
        conn.executemany(
            q.DELIVERY_INSERT,
            [
                (token, sub, 0, first + i, ttl, row[0], now, now)
                for i, (ttl, row) in enumerate(zip(ttls, rows))
                for (sub,) in subscribers
            ],
        )
    return ids.message_ids(range(first, last + 1))


class SqliteClaims(base.ClaimController):
    def __init__(self, driver: SqliteDriver) -> None:
        self.d = driver

    async def create(
        self,
        project: str,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: DeadLetterPolicy | None,
    ) -> ClaimResult:
        now = self.d.clock()
        claim_id = secrets.token_hex(12)
        claim_expires = now + ttl
        keep_until = claim_expires + grace

        def job(conn: sqlite3.Connection) -> ClaimResult:
            queue_id = _queue_id(conn, project, queue)
            if queue_id is None:
                return ClaimResult(None)
            claimed: list[tuple[Any, ...]] = []
            # Counted inside the job: its result is handed back only once
            # the transaction committed, so an undone move is never counted.
            moved = 0
            # Concurrent claims share a transaction (writer.py) and each
            # scanned from the queue's head past the rows the ones before
            # it had just taken: 32 claims of 10 walked ~5,000 rows with a
            # table lookup each, on the event loop (py-spy: claim p50 4x a
            # delete's, all of it in the writer). A claim leaves the last
            # row it looked at as the queue's floor for the transaction; the
            # next claim starts after it. Rows up to the floor were taken
            # or not claimable a moment before; a claim release in the same
            # transaction drops the floors (SqliteClaims.delete).
            floors: dict[Any, int | None] = self.d.writer.notes.setdefault("claim_floors", {})
            floor = floors.get(queue_id)
            # Dead-lettered messages free their slot, so look again until
            # the claim is full or the queue has nothing left to offer.
            while len(claimed) < limit:
                want = limit - len(claimed)
                if floor is None:
                    rows = conn.execute(
                        q.MESSAGES_CLAIMABLE, (queue_id, now, now, now, want)
                    ).fetchall()
                else:
                    rows = conn.execute(
                        q.MESSAGES_CLAIMABLE_AFTER, (queue_id, floor, now, now, now, want)
                    ).fetchall()
                if not rows:
                    break
                floor = rows[-1][0]
                taken = []
                for row in rows:
                    if dead_letter is not None and row[6] >= dead_letter.max_claim_count:
                        moved += _dead_letter(conn, project, row, dead_letter, now)
                    else:
                        taken.append(row)
                # Mark this batch claimed now, so the next look skips it.
                conn.executemany(
                    q.MESSAGE_CLAIM,
                    [(claim_id, claim_expires, keep_until, row[0]) for row in taken],
                )
                claimed += taken
                if len(rows) < want:
                    break
            if not claimed:
                return ClaimResult(None, dead_lettered=moved)
            conn.execute(q.CLAIM_INSERT, (claim_id, queue_id, ttl, grace, now, claim_expires))
            messages = []
            for row in claimed:
                rowid, body, created, expires, _, _, count = row
                messages.append(
                    Message(
                        id=self.d.ids.message_id(rowid),
                        ttl=round(max(expires, keep_until) - created),
                        age=int(now - created),
                        body=_decode(body),
                        claim_id=claim_id,
                        claim_count=count + 1,
                    )
                )
            # Last: a job that raises is undone, and so must its floor be.
            floors[queue_id] = floor
            return ClaimResult(claim_id, messages, moved)

        return await self.d.writer.run(job)

    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        now = self.d.clock()

        def read(conn: sqlite3.Connection) -> Claim:
            row = conn.execute(q.CLAIM_GET, (claim_id, now, project, queue)).fetchone()
            if row is None:
                raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
            rows = conn.execute(q.CLAIM_MESSAGES, (claim_id, now, now)).fetchall()
            return Claim(
                id=row[0],
                ttl=row[1],
                grace=row[2],
                age=int(now - row[3]),
                messages=[message_from_row(self.d.ids, r, now) for r in rows],
            )

        return self.d.read(read)

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        now = self.d.clock()

        def job(conn: sqlite3.Connection) -> None:
            queue_id = _queue_id(conn, project, queue)
            live = queue_id is not None and conn.execute(
                q.CLAIM_LIVE_IN_QUEUE, (claim_id, queue_id, now)
            ).fetchone()
            if not live:
                raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
            conn.execute(q.CLAIM_RENEW, (ttl, grace, now, now + ttl, claim_id))
            conn.execute(q.CLAIM_RENEW_MESSAGES, (now + ttl, now + ttl + grace, claim_id, now))

        await self.d.writer.run(job)

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            queue_id = _queue_id(conn, project, queue)
            if queue_id is None:
                return
            if conn.execute(q.CLAIM_LIVE_IN_QUEUE, (claim_id, queue_id, float("-inf"))).fetchone():
                conn.execute(q.CLAIM_RELEASE_MESSAGES, (claim_id,))
                conn.execute(q.CLAIM_DELETE, (claim_id,))
                # Released rows may lie under a claim floor (see create).
                self.d.writer.notes.pop("claim_floors", None)

        await self.d.writer.run(job)


def _dead_letter(
    conn: sqlite3.Connection,
    project: str,
    row: tuple[Any, ...],
    policy: DeadLetterPolicy,
    now: float,
) -> int:
    """Move one message to the dead letter queue under a new id (so
    observers paging the DLQ by marker see it), or drop it if none is set.
    Returns how many messages were moved: 1, or 0 for a drop."""
    rowid, _, created, expires = row[:4]
    moved = 0
    if policy.queue:
        dlq_id = _ensure_queue(conn, project, policy.queue, now)
        new_expires = now + policy.ttl if policy.ttl else expires
        moved = conn.execute(q.MESSAGE_MOVE, (dlq_id, now, new_expires, now, rowid)).rowcount
    conn.execute(q.MESSAGE_DELETE, (rowid,))
    return moved


class SqliteSubscriptions(base.SubscriptionController):
    def __init__(self, driver: SqliteDriver) -> None:
        self.d = driver

    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        now = self.d.clock()
        token = _new_token()
        options = _encode(subscription.options).decode()
        ttl = subscription.ttl
        subscriber = subscription.subscriber

        def job(conn: sqlite3.Connection) -> str | None:
            taken = conn.execute(
                q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
            ).fetchone()
            if taken:
                return None
            rowid = _inserted(conn.execute(
                q.SUBSCRIPTION_INSERT,
                (token, project, queue, subscriber, ttl, now, now + ttl, options,
                 int(subscription.confirmed)),
            ))
            subscription_id = self.d.ids.public_id(IdKind.SUBSCRIPTION, rowid, token)
            if confirmation is not None:
                # One job, so the two inserts are one: the writer undoes all
                # of a failing job's writes, and no subscription is left.
                conn.execute(
                    q.DELIVERY_INSERT,
                    (_new_token(), rowid, _KIND_CODES[DeliveryKind.CONFIRMATION], None, None,
                     _encode(confirmation(subscription_id)), now, now),
                )
            return subscription_id

        return await self.d.writer.run(job)

    async def get(self, project: str, queue: str, subscription_id: str) -> Subscription:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = self.d.read(
                lambda c: c.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            )
        if row is None:
            raise _no_subscription(subscription_id)
        return _subscription(self.d.ids, row, now)

    async def find(self, project: str, queue: str, subscriber: str) -> Subscription | None:
        now = self.d.clock()
        row = self.d.read(
            lambda c: c.execute(
                q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
            ).fetchone()
        )
        return None if row is None else _subscription(self.d.ids, row, now)

    async def list(
        self, project: str, queue: str, *, marker: str | None, limit: int
    ) -> list[Subscription]:
        now = self.d.clock()
        params = (project, queue, self.d.ids.marker(IdKind.SUBSCRIPTION, marker), now, limit)
        rows = self.d.read(lambda c: c.execute(q.SUBSCRIPTION_PAGE, params).fetchall())
        return [_subscription(self.d.ids, row, now) for row in rows]

    async def update(
        self,
        project: str,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise _no_subscription(subscription_id)
        fields: list[str] = []
        args: list[Any] = []
        if subscriber is not None:
            fields.append(q.SUBSCRIPTION_SET_SUBSCRIBER)
            args.append(subscriber)
        if ttl is not None:
            fields.append(q.SUBSCRIPTION_SET_TTL)
            args += [ttl, now, now + ttl]
        if options is not None:
            fields.append(q.SUBSCRIPTION_SET_OPTIONS)
            args.append(_encode(options).decode())
        sql = q.SUBSCRIPTION_UPDATE.format(fields=", ".join(fields))

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            if row is None:
                raise _no_subscription(subscription_id)
            if subscriber is not None and subscriber != row[3]:
                taken = conn.execute(
                    q.SUBSCRIPTION_LIVE_BY_SUBSCRIBER, (project, queue, subscriber, now)
                ).fetchone()
                if taken:
                    raise errors.Conflict(
                        f"Queue {queue} already has a subscription for {subscriber}."
                    )
            if fields:
                conn.execute(sql, (*args, row[0]))

        await self.d.writer.run(job)

    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise _no_subscription(subscription_id)

        def job(conn: sqlite3.Connection) -> None:
            params = (int(confirmed), *parsed, project, queue, now)
            if conn.execute(q.SUBSCRIPTION_CONFIRM, params).rowcount == 0:
                raise _no_subscription(subscription_id)

        await self.d.writer.run(job)

    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            return

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(q.SUBSCRIPTION_OF_QUEUE, (*parsed, project, queue)).fetchone()
            if row is not None:
                conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTION, (row[0],))
                conn.execute(q.SUBSCRIPTION_DELETE, (row[0],))

        await self.d.writer.run(job)


def _no_subscription(subscription_id: str) -> errors.SubscriptionDoesNotExist:
    return errors.SubscriptionDoesNotExist(f"Subscription {subscription_id} does not exist.")


class SqliteDeliveries(base.DeliveryController):
    def __init__(self, driver: SqliteDriver) -> None:
        self.d = driver

    async def enqueue(
        self,
        project: str,
        queue: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: dict[str, Any],
    ) -> str:
        now = self.d.clock()
        parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise _no_subscription(subscription_id)
        token = _new_token()
        content = _encode(payload)

        def job(conn: sqlite3.Connection) -> str:
            row = conn.execute(q.SUBSCRIPTION_GET, (*parsed, project, queue, now)).fetchone()
            if row is None:
                raise _no_subscription(subscription_id)
            rowid = _inserted(conn.execute(
                q.DELIVERY_INSERT,
                (token, row[0], _KIND_CODES[kind], None, None, content, now, now),
            ))
            return self.d.ids.public_id(IdKind.DELIVERY, rowid, token)

        return await self.d.writer.run(job)

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        now = self.d.clock()
        until = now + lease_seconds

        def job(conn: sqlite3.Connection) -> list[Delivery]:
            leased: list[Delivery] = []
            while len(leased) < limit:
                want = limit - len(leased)
                rows = conn.execute(q.DELIVERIES_DUE, (now, want)).fetchall()
                for row in rows:
                    sub_expires = row[16]
                    if sub_expires is None or sub_expires <= now:
                        # Its subscription was deleted or expired: it is owed
                        # to nobody. (Dead ones stay until gc.)
                        conn.execute(q.DELIVERY_DELETE_BY_ROWID, (row[0],))
                        continue
                    conn.execute(q.DELIVERY_LEASE, (until, row[0]))
                    leased.append(_delivery(self.d.ids, row))
                if len(rows) < want:
                    break
            return leased

        return await self.d.writer.run(job)

    async def _update(self, delivery_id: str, sql: str, *args: Any) -> None:
        parsed = self.d.ids.parse_public_id(IdKind.DELIVERY, delivery_id)
        if parsed is None:
            return  # a delivery we never issued: nothing to do

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(sql, (*args, *parsed))

        await self.d.writer.run(job)

    async def delivered(self, delivery_id: str) -> None:
        await self._update(delivery_id, q.DELIVERY_DELETE)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        await self._update(delivery_id, q.DELIVERY_RETRY, at, error)

    async def dead(self, delivery_id: str, *, error: str) -> None:
        await self._update(delivery_id, q.DELIVERY_DEAD, self.d.clock(), error)

    async def list(
        self,
        project: str,
        queue: str,
        *,
        status: DeliveryStatus,
        marker: str | None,
        limit: int,
        subscription_id: str | None = None,
    ) -> list[Delivery]:
        now = self.d.clock()
        params: tuple[Any, ...] = (project, queue, now, _STATUS_CODES[status],
                                   self.d.ids.marker(IdKind.DELIVERY, marker))
        filters = ""
        if subscription_id is not None:
            parsed = self.d.ids.parse_public_id(IdKind.SUBSCRIPTION, subscription_id)
            if parsed is None:
                return []
            filters = q.DELIVERY_PAGE_OF_SUBSCRIPTION
            params += parsed
        sql = q.DELIVERY_PAGE.format(filters=filters)
        params += (limit,)

        def read(conn: sqlite3.Connection) -> list[Delivery]:
            return [_delivery(self.d.ids, row) for row in conn.execute(sql, params).fetchall()]

        if subscription_id is not None:
            return self.d.read(read)  # one subscription's, by index
        # A queue's: gathered from each subscription and sorted; off the loop.
        return await self.d.read_in_thread(read)


__all__ = ["SqliteDriver"]
