"""The PostgreSQL driver (asyncpg, a connection pool).

A thin runner: every statement is in queries.py; this module picks one,
binds the clock's reading and the arguments, and shapes the rows. Each
operation is one statement where it can be (posts, claims without a dead
letter policy, pops, renewals, releases) and one short transaction where
it must check before it acts (bulk deletes, dead-lettering claims, queue
deletes).

Failure: anything that goes wrong with the backend (refused or broken
connections, timeouts, a server shutting down, a statement cancelled)
becomes errors.ServiceUnavailable, and every operation ends within
``connect_timeout + command_timeout`` seconds. The pool replaces broken
connections by itself, so once the server is back the next operations
succeed without reopening the driver.

URL: ``postgres://user:password@host:port/database?option=value``
(``postgresql://`` too). Options of Tidings, removed before the URL reaches
asyncpg (anything else is passed on, e.g. ``sslmode`` or ``search_path``):

- ``min_size`` / ``max_size``: pool size (default 1 / 10)
- ``connect_timeout``: seconds to connect or wait for a pooled connection (5)
- ``command_timeout``: seconds per statement, client side (15)
- ``statement_timeout``: seconds per statement, server side (off)
- ``migrate=false``: do not create or upgrade the schema at open (the
  schema must then be current; run ``tidings migrate``)
- ``notify=false``: no NOTIFY on post (a NOTIFY serialises commits)
- ``channel``: the LISTEN/NOTIFY channel (default ``tidings``)
- ``dead_retention``: seconds gc keeps a DEAD delivery after it died
  (the dead_retention setting; it also goes with its subscription)

Notifications: subscriptions and the delivery outbox are tables of their
own; a post writes its MESSAGE deliveries in the posting statement (see
queries.MESSAGE_POST). Subscription and delivery ids are a row's sequence
number (16 hex digits, so ids order by creation) and 8 random hex digits.
``watch`` rides on the LISTEN/NOTIFY listener: one listener callback per
driver dispatches to the in-process watches keyed by (project, queue).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
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
    system_clock,
)
from tidings.storage.common.claims import check_delete_allowed
from tidings.storage.common.ids import IdCodec, IdKind
from tidings.storage.common.rows import message_from_row
from tidings.storage.common.url_options import UrlOptions
from tidings.storage.common.watch import EventWatch
from tidings.storage.postgres import queries as q
from tidings.storage.postgres import schema
from tidings.storage.postgres.listener import Callback, Listener, Subscription, encode_payload

log = logging.getLogger(__name__)

T = TypeVar("T")
GC_BATCH = 5000
HEALTH_QUEUES = 1000
HEALTH_COUNT_CAP = 100_000
# pg_notify refuses payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD = 7900
_encode = msgspec.json.encode
_decode = msgspec.json.decode

# What a failing or unreachable backend raises. TimeoutError covers
# asyncio's timeouts and is an OSError, as are refused and reset sockets.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
# Conflicts between transactions that are safe to run again from the start.
RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
RETRIES = 3
UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def _public_id(ids: IdCodec, kind: IdKind, seq: int, token: str) -> str:
    """A subscription's or delivery's id from its row's seq and token (8 hex
    digits in the row, a number in the id)."""
    return ids.public_id(kind, seq, int(token, 16))


def _parse_public_id(ids: IdCodec, kind: IdKind, text: str) -> tuple[int, str] | None:
    """(seq, token) as the row holds them, of an id _public_id() wrote."""
    parsed = ids.parse_public_id(kind, text)
    return None if parsed is None else (parsed[0], f"{parsed[1]:08x}")


def _subscription(ids: IdCodec, row: Sequence[Any], now: float) -> base.Subscription:
    seq, token, queue, subscriber, ttl, options, confirmed, started = row[:8]
    return base.Subscription(
        id=_public_id(ids, IdKind.SUBSCRIPTION, seq, token),
        queue=queue,
        subscriber=subscriber,
        ttl=ttl,
        age=int(now - started),
        options=_decode(options),
        confirmed=confirmed,
    )


def _delivery(ids: IdCodec, row: asyncpg.Record) -> Delivery:
    kind = DeliveryKind(row["kind"])
    if kind is DeliveryKind.MESSAGE:
        payload = {"id": ids.message_id(row["message_id"]), "body": _decode(row["body"]),
                   "ttl": row["ttl"]}
    else:
        payload = _decode(row["body"])
    return Delivery(
        id=_public_id(ids, IdKind.DELIVERY, row["seq"], row["token"]),
        project=row["project"],
        queue=row["queue"],
        subscription_id=_public_id(ids, IdKind.SUBSCRIPTION, row["subscription_seq"],
                                    row["subscription_token"]),
        subscriber=row["subscriber"],
        options=_decode(row["options"]),
        kind=kind,
        payload=payload,
        attempts=row["attempts"],
        created=row["created"],
        status=DeliveryStatus(row["status"]),
        last_error=row["last_error"],
    )


def _error_text(error: str) -> str:
    # PostgreSQL's text cannot hold NUL; an error message may.
    return error.replace("\x00", "\ufffd")


def _rowcount(status: str) -> int:
    """The row count of a command tag such as "DELETE 5" or "INSERT 0 5"."""
    return int(status.rsplit(" ", 1)[-1])


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
        text = value if isinstance(value, str) else _encode(value).decode()
        if "\x00" in key or "\x00" in text:
            continue
        doc[key] = text
    return _encode(doc).decode()


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
    return filters.name or None, _encode(wanted).decode()


def redact(url: str) -> str:
    """The URL without its password, for logs and the health report."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDriver(base.DataDriver):
    name = "postgres"
    capabilities = frozenset(
        {Capability.FIFO, Capability.CLAIMS, Capability.DURABILITY, Capability.AT_LEAST_ONCE}
    )

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock = system_clock,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 15.0,
        statement_timeout: float | None = None,
        migrate: bool = True,
        notify: bool = True,
        channel: str = "tidings",
        dead_retention: float = DEAD_RETENTION,
    ) -> None:
        if max_size < 1 or min_size > max_size:
            raise ValueError(f"postgres pool sizes must satisfy 0 <= min_size <= max_size, "
                             f"max_size >= 1 (got {min_size}, {max_size})")
        if not channel or len(channel.encode()) > 63:
            raise ValueError("postgres channel must be 1 to 63 bytes long")
        self.dsn = dsn
        self.clock = clock
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.statement_timeout = statement_timeout
        self.migrate_on_open = migrate
        self.notify = notify
        self.channel = channel
        self.dead_retention = dead_retention
        # The longest any operation may take, whatever happens underneath.
        self.deadline = connect_timeout + command_timeout
        self._pool: asyncpg.Pool | None = None
        self._ids: IdCodec | None = None
        self._listener: Listener | None = None
        self.queues = PostgresQueues(self)
        self.messages = PostgresMessages(self)
        self.claims = PostgresClaims(self)
        self.subscriptions = PostgresSubscriptions(self)
        self.deliveries = PostgresDeliveries(self)
        # watch(): the open watches by (project, queue), and the one
        # listener callback that wakes them.
        self._watches: dict[tuple[str, str], set[PostgresWatch]] = {}
        self._watch_subscription: Subscription | None = None
        self._watch_lock = asyncio.Lock()
        # listen(): one LISTEN connection per bus channel of this process.
        self._bus_listeners: dict[str, Listener] = {}
        self._bus_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = system_clock) -> PostgresDriver:
        """See the module docstring for the options (PostgreSQL's own
        synchronous_commit stands for SQLite's ``sync``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError(f"not a postgres URL: {redact(url)!r}")
        options = UrlOptions(parts.query, "postgres")
        # Only the options given: the others keep the constructor's defaults.
        kwargs: dict[str, Any] = {}
        for key in ("min_size", "max_size"):
            if options.has(key):
                kwargs[key] = options.take_count(key, 0)
        for key in ("connect_timeout", "command_timeout", "statement_timeout", "dead_retention"):
            if options.has(key):
                kwargs[key] = options.take_seconds(key, 0.0)
        for key in ("migrate", "notify"):
            if options.has(key):
                kwargs[key] = options.take_flag(key, True)
        if options.has("channel"):
            kwargs["channel"] = options.take_text("channel", "")
        dsn = urlunsplit(parts._replace(query=urlencode(options.rest())))
        return cls(dsn, clock=clock, **kwargs)

    # --- connections ------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        settings = {"application_name": "tidings"}
        if self.statement_timeout is not None:
            settings["statement_timeout"] = str(int(self.statement_timeout * 1000))
        return {
            "timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "server_settings": settings,
        }

    def _unavailable(self, exc: BaseException) -> errors.ServiceUnavailable:
        """The client-facing error for a backend failure; details go to the log."""
        if isinstance(exc, asyncpg.QueryCanceledError):
            description = "The storage backend cancelled a statement that ran too long."
        elif isinstance(exc, asyncio.TimeoutError):
            description = (f"The storage backend (PostgreSQL) did not answer within "
                           f"{self.deadline:g} seconds.")
        elif isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                              asyncpg.CannotConnectNowError, asyncpg.OperatorInterventionError,
                              asyncpg.InsufficientResourcesError)):
            description = "The storage backend (PostgreSQL) cannot be reached."
        else:
            description = "The storage backend (PostgreSQL) failed."
            log.error("postgres operation failed", exc_info=exc)
            return errors.ServiceUnavailable(description)
        log.warning("postgres unavailable: %s: %s", type(exc).__name__, exc)
        return errors.ServiceUnavailable(description)

    async def run(self, job: Callable[[asyncpg.Connection], Awaitable[T]], *,
                  transaction: bool = False) -> T:
        """Run ``job`` on a pooled connection (in a transaction if asked),
        within the deadline, with backend failures as ServiceUnavailable."""
        pool = self._pool
        if pool is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        try:
            async with asyncio.timeout(self.deadline):
                conn = await pool.acquire(timeout=self.connect_timeout)
                try:
                    return await self._attempt(conn, job, transaction)
                except BaseException as exc:
                    if not isinstance(exc, (errors.TidingsError, asyncpg.PostgresError)):
                        # A timeout, a cancellation or a broken socket leaves
                        # the connection mid-conversation. Dropping it is
                        # immediate; a reset would wait for a server that
                        # may never answer. The pool makes a new one.
                        conn.terminate()
                    raise
                finally:
                    await pool.release(conn)
        except errors.TidingsError:
            raise
        except UNSTORABLE_TEXT as exc:
            # A NUL in a project or queue name or a client id: PostgreSQL's
            # text cannot hold one (bodies and metadata are bytea). The
            # request is at fault, not the backend.
            raise errors.ValidationFailed(
                "Names and ids may not contain the NUL character.") from exc
        except BACKEND_ERRORS as exc:
            raise self._unavailable(exc) from exc

    @staticmethod
    async def _attempt(conn: asyncpg.Connection, job: Callable[[asyncpg.Connection], Awaitable[T]],
                       transaction: bool) -> T:
        if not transaction:
            return await job(conn)
        for attempt in itertools.count(1):
            try:
                async with conn.transaction():
                    return await job(conn)
            except RETRYABLE:
                # A deadlock or serialisation conflict rolled the whole
                # transaction back: running it again is safe.
                if attempt >= RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(lambda conn: conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(lambda conn: conn.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda conn: conn.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.run(lambda conn: conn.execute(sql, *args))

    @property
    def ids(self) -> IdCodec:
        """The database's public id codec (read from it by open())."""
        if self._ids is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        return self._ids

    # --- life cycle -------------------------------------------------------

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size,
                    **self._connect_kwargs(),
                )
        except BACKEND_ERRORS as exc:
            raise self._unavailable(exc) from exc
        try:
            if self.migrate_on_open:
                await self.migrate()
            else:
                await self.run(schema.check)
            scheme = await self.fetchrow(q.ID_SCHEME)
            if scheme is None:
                raise schema.SchemaOutdated("the id_scheme row is missing: run `tidings migrate`")
            self._ids = IdCodec.from_scheme(*scheme)
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> int:
        """Create or upgrade the schema (idempotent, safe to run from several
        processes at once); returns the version found before."""
        now = self.clock()
        return await self.run(lambda conn: schema.upgrade(conn, now))

    async def close(self) -> None:
        self._watch_subscription = None
        self._wake_watches(None, None)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        listeners, self._bus_listeners = list(self._bus_listeners.values()), {}
        for listener in listeners:
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.deadline)
            except Exception:  # a dead server or a stuck connection: just drop them
                pool.terminate()

    async def is_alive(self) -> bool:
        try:
            await self.fetchval(q.PING)
        except errors.ServiceUnavailable:
            return False
        return True

    async def health(self) -> dict[str, Any]:
        pool = self._pool
        details: dict[str, Any] = {
            "storage_reachable": False,
            "url": redact(self.dsn),
            "schema_version": schema.VERSION,
            "pool": {
                "size": pool.get_size() if pool else 0,
                "idle": pool.get_idle_size() if pool else 0,
                "min_size": self.min_size,
                "max_size": self.max_size,
            },
            "message_counts": [],
        }
        try:
            rows = await self.fetch(
                q.MESSAGE_COUNTS_BY_QUEUE, self.clock(), HEALTH_QUEUES, HEALTH_COUNT_CAP
            )
        except errors.ServiceUnavailable:
            return details
        details["storage_reachable"] = True
        details["message_counts"] = [
            {"project": project, "queue": name, "messages": total,
             **({"at_least": True} if total >= HEALTH_COUNT_CAP else {})}
            for project, name, total in rows
        ]
        return details

    async def stored_secret(self, name: str) -> bytes:
        base.check_secret_name(name)
        candidate, now = secrets.token_hex(32), self.clock()

        async def job(conn: asyncpg.Connection) -> str:
            await conn.execute(q.SECRET_INSERT, name, candidate, now)
            return await conn.fetchval(q.SECRET_GET, name)

        return (await self.run(job)).encode()

    async def gc(self) -> base.GcResult:
        now = self.clock()
        total = base.GcResult()
        while True:
            # Batches keep each statement short, so requests keep flowing.
            messages = _rowcount(await self.execute(q.GC_EXPIRED_MESSAGES, now, GC_BATCH))
            claims = await self.fetchval(q.GC_EXPIRED_CLAIMS, now, GC_BATCH)
            subscriptions, deliveries = await self.run(
                lambda conn: _gc_subscriptions(conn, now), transaction=True)
            dead = _rowcount(await self.execute(
                q.GC_DEAD_DELIVERIES, now - self.dead_retention, GC_BATCH))
            total += base.GcResult(messages, claims, subscriptions, deliveries + dead)
            if max(messages, claims, subscriptions, dead) < GC_BATCH:
                return total

    # --- wake-ups ---------------------------------------------------------

    async def subscribe(self, callback: Callback) -> Subscription:
        """Call ``callback(project, queue)`` after each post commits, in this
        or any other process using the same database and channel.

        LISTEN is active when this returns. ``callback`` may be a plain or
        an async function; it is called with (None, None) after the
        listening connection was lost and restored, since wake-ups may
        have been missed meanwhile. Stop with ``await subscription.close()``
        or ``async with await driver.subscribe(cb):``. Raises
        ServiceUnavailable when the server cannot be reached.
        """
        if self._pool is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        if self._listener is None:
            self._listener = Listener(
                lambda: asyncpg.connect(self.dsn, **self._connect_kwargs()),
                self.channel,
                ping_timeout=self.command_timeout,
            )
        try:
            async with asyncio.timeout(self.deadline):
                return await self._listener.subscribe(callback)
        except BACKEND_ERRORS as exc:
            raise self._unavailable(exc) from exc

    # --- the bus ----------------------------------------------------------

    def _bus_channel(self, channel: str) -> str:
        name = f"{self.channel}.bus.{channel}"
        if len(name.encode()) > 63:  # PostgreSQL's limit for a channel name
            digest = hashlib.sha256(channel.encode()).hexdigest()[:24]
            name = f"{self.channel[:30]}.bus.{digest}"
        return name

    async def publish(self, channel: str, message: bytes) -> int | None:
        """NOTIFY on the channel; a message too large for a NOTIFY payload
        is stored in bus_messages and announced by its row id."""
        name = self._bus_channel(channel)
        text = base64.b64encode(message).decode()
        if len(text) <= MAX_NOTIFY_PAYLOAD:
            await self.execute(q.BUS_NOTIFY, name, text)
        else:
            await self.execute(q.BUS_PUBLISH_LARGE, name, message)
        return None  # NOTIFY does not say who heard it

    def listen(self, channel: str, receive: base.Receive) -> AbstractAsyncContextManager[None]:
        """LISTEN on the channel, on a connection of its own (see listener.py)."""
        return self._listen(channel, receive)

    @asynccontextmanager
    async def _listen(self, channel: str, receive: base.Receive) -> AsyncIterator[None]:
        if self._pool is None:
            raise errors.ServiceUnavailable("The storage is not open.")
        name = self._bus_channel(channel)

        def heard(payload: str | None, _unused: Any) -> Awaitable[None] | None:
            if payload is None:
                return None  # reconnected: what was published meanwhile is lost
            if payload.startswith("@"):
                return self._receive_stored(int(payload[1:]), receive)
            receive(base64.b64decode(payload))
            return None

        async with self._bus_lock:
            listener = self._bus_listeners.get(name)
            if listener is None:
                listener = self._bus_listeners[name] = Listener(
                    lambda: asyncpg.connect(self.dsn, **self._connect_kwargs()), name,
                    ping_timeout=self.command_timeout, decode=lambda text: (text, None))
            try:
                async with asyncio.timeout(self.deadline):
                    subscription = await listener.subscribe(heard)
            except BACKEND_ERRORS as exc:
                raise self._unavailable(exc) from exc
        try:
            yield
        finally:
            await subscription.close()
            async with self._bus_lock:
                if not listener.has_subscribers() and self._bus_listeners.get(name) is listener:
                    del self._bus_listeners[name]
                    await listener.close()

    async def _receive_stored(self, row_id: int, receive: base.Receive) -> None:
        try:
            message = await self.fetchval(q.BUS_MESSAGE, row_id)
        except errors.ServiceUnavailable:
            log.warning("a bus message could not be read; it is lost")
            return
        if message is not None:
            receive(bytes(message))

    def watch(self, project: str, queue: str) -> PostgresWatch:
        """See DataDriver.watch: LISTEN is active once ``async with`` has
        entered (ServiceUnavailable if the server cannot be reached)."""
        return PostgresWatch(self, (project, queue))

    async def _watch_start(self, watch: PostgresWatch) -> None:
        # Registered first: a post by this process while LISTEN starts
        # wakes the watch directly (see PostgresMessages.post).
        self._watches.setdefault(watch.key, set()).add(watch)
        try:
            if self._watch_subscription is None:
                async with self._watch_lock:
                    if self._watch_subscription is None:
                        self._watch_subscription = await self.subscribe(self._wake_watches)
        except BaseException:
            self._watch_stop(watch)
            raise

    def _watch_stop(self, watch: PostgresWatch) -> None:
        watches = self._watches.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.key]

    def _wake_watches(self, project: str | None, queue: str | None) -> None:
        """The listener's callback; (None, None) after a reconnect (or at
        close) wakes every watch, since posts may have gone unheard."""
        if project is None or queue is None:
            woken = [w for watches in self._watches.values() for w in watches]
        else:
            woken = list(self._watches.get((project, queue), ()))
        for watch in woken:
            watch.event.set()

    def _notify_args(self, project: str, queue: str) -> tuple[str | None, str | None]:
        if not self.notify:
            return None, None
        payload = encode_payload(project, queue)
        if len(payload.encode()) > MAX_NOTIFY_PAYLOAD:
            return None, None  # too long to announce; pollers still find the messages
        return self.channel, payload


class PostgresWatch(EventWatch):
    """What ``driver.watch(project, queue)`` returns (a base.PostWatch)."""

    def __init__(self, driver: PostgresDriver, key: tuple[str, str]) -> None:
        super().__init__()
        self.driver = driver
        self.key = key

    async def __aenter__(self) -> Self:
        await self.driver._watch_start(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.driver._watch_stop(self)


async def _gc_subscriptions(conn: asyncpg.Connection, now: float) -> tuple[int, int]:
    """A batch of expired subscriptions and their deliveries (in a
    transaction): (subscriptions, deliveries) removed."""
    seqs = [row[0] for row in await conn.fetch(q.GC_EXPIRED_SUBSCRIPTIONS, now, GC_BATCH)]
    if not seqs:
        return 0, 0
    status = await conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTIONS, seqs)
    return len(seqs), _rowcount(status)


async def _lock_queue(conn: asyncpg.Connection, project: str, name: str, now: float) -> int:
    """The queue's id with its row locked (see queries.py), creating it if
    needed. Inside a transaction: the lock lasts until it ends."""
    for _ in range(10):
        queue_id = await conn.fetchval(q.QUEUE_LOCK, project, name)
        if queue_id is not None:
            return queue_id
        # Our own new row is locked until commit; a conflict means another
        # transaction created it, and the next QUEUE_LOCK sees (and waits for) it.
        queue_id = await conn.fetchval(q.QUEUE_INSERT, project, name, b"{}", "{}", now)
        if queue_id is not None:
            return queue_id
    raise errors.ServiceUnavailable(f"Queue {name} was deleted and created repeatedly; try again.")


class PostgresQueues(base.QueueController):
    def __init__(self, driver: PostgresDriver) -> None:
        self.d = driver

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        queue_id = await self.d.fetchval(
            q.QUEUE_INSERT, project, name, _encode(metadata), _filter_doc(metadata), self.d.clock()
        )
        return queue_id is not None

    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        raw = await self.d.fetchval(q.QUEUE_METADATA, project, name)
        if raw is None:
            raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")
        return _decode(raw)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> None:
        status = await self.d.execute(
            q.QUEUE_SET_METADATA, project, name, _encode(metadata), _filter_doc(metadata)
        )
        if _rowcount(status) == 0:
            raise errors.QueueDoesNotExist(f"Queue {name} does not exist.")

    async def delete(self, project: str, name: str) -> None:
        async def job(conn: asyncpg.Connection) -> None:
            queue_id = await conn.fetchval(q.QUEUE_LOCK_FOR_DELETE, project, name)
            if queue_id is not None:
                await conn.execute(q.MESSAGES_DELETE_OF_QUEUE, queue_id)
                await conn.execute(q.CLAIMS_DELETE_OF_QUEUE, queue_id)
                await conn.execute(q.QUEUE_DELETE, queue_id)
            # Its subscriptions too (they may exist without the queue's
            # row), then their deliveries: see queries.SUBSCRIPTION_DELETE.
            await conn.execute(q.SUBSCRIPTIONS_DELETE_OF_QUEUE, project, name)
            await conn.execute(q.DELIVERIES_DELETE_OF_QUEUE, project, name)

        await self.d.run(job, transaction=True)

    async def list(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        detailed: bool,
        filters: QueueFilters | None = None,
    ) -> list[QueueRecord]:
        args = _filter_args(filters)
        if args is None:
            return []
        rows = await self.d.fetch(q.QUEUE_LIST, project, marker or "", detailed, *args, limit)
        return [
            QueueRecord(name=row[0], metadata=_decode(row[1]) if detailed else None)
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
                await conn.execute(q.MESSAGES_DELETE_OF_QUEUE, queue_id)
                await conn.execute(q.CLAIMS_DELETE_OF_QUEUE, queue_id)

        await self.d.run(job, transaction=True)


def _stat(ids: IdCodec, rowid: int | None, created: float | None, now: float
          ) -> MessageStat | None:
    if rowid is None or created is None:
        return None
    return MessageStat(id=ids.message_id(rowid), age=int(now - created), created=created)


class PostgresMessages(base.MessageController):
    def __init__(self, driver: PostgresDriver) -> None:
        self.d = driver

    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> list[str]:
        now = self.d.clock()
        if not messages:
            await self.d.fetchval(q.QUEUE_INSERT, project, queue, b"{}", "{}", now)
            return []
        bodies = [_encode(m.body) for m in messages]
        ttls = [int(m.ttl) for m in messages]
        delays = [int(m.delay) for m in messages]
        channel, payload = self.d._notify_args(project, queue)
        for _ in range(10):
            rows = await self.d.fetch(
                q.MESSAGE_POST, project, queue, now, client_id, bodies, ttls, delays,
                channel, payload,
            )
            if rows:
                # This process's watches need not wait for the NOTIFY
                # (nor for one at all under notify=false).
                self.d._wake_watches(project, queue)
                # Ids are drawn in the batch's order, so ascending ids are
                # the messages in the order given.
                return [self.d.ids.message_id(row[0]) for row in rows]
            # No such queue yet: create it (lazily, as Zaqar does) and post
            # again; the post itself stays one all-or-nothing statement.
            await self.d.fetchval(q.QUEUE_INSERT, project, queue, b"{}", "{}", now)
        raise errors.ServiceUnavailable(
            f"Queue {queue} was deleted and created repeatedly; try again.")

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
        exclude = client_id if (not echo and client_id is not None) else None
        rows = await self.d.fetch(
            q.MESSAGE_PAGE, project, queue, after, now, include_claimed, include_delayed,
            exclude, limit,
        )
        page = [message_from_row(self.d.ids, row, now) for row in rows]
        return page, (page[-1].id if page else None)

    async def get(self, project: str, queue: str, message_id_: str) -> Message:
        rowid = self.d.ids.parse_message_id(message_id_)
        now = self.d.clock()
        rows = []
        if rowid is not None:
            rows = await self.d.fetch(q.MESSAGES_GET, [rowid], now, project, queue)
        if not rows:
            raise errors.MessageDoesNotExist(
                f"Message {message_id_} does not exist in queue {queue}."
            )
        return message_from_row(self.d.ids, rows[0], now)

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]
                       ) -> builtins.list[Message]:
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return []
        now = self.d.clock()
        rows = await self.d.fetch(q.MESSAGES_GET, rowids, now, project, queue)
        found = {row[0]: row for row in rows}
        # In the order asked for, as the SQLite driver answers.
        return [message_from_row(self.d.ids, found[r], now) for r in rowids if r in found]

    async def delete(
        self, project: str, queue: str, message_id_: str, claim_id: str | None
    ) -> None:
        rowid = self.d.ids.parse_message_id(message_id_)
        if rowid is None:
            return
        now = self.d.clock()
        allowed = set() if claim_id is None else {claim_id}

        async def job(conn: asyncpg.Connection) -> None:
            for _ in range(RETRIES):
                # The common case in one statement: it deletes only what
                # may go. When nothing went, the message's state says why.
                deleted = await conn.fetchval(
                    q.MESSAGE_DELETE_CHECKED, rowid, now, project, queue, claim_id
                )
                if deleted is not None:
                    return
                row = await conn.fetchrow(q.MESSAGE_CLAIM_STATE, [rowid], now, project, queue)
                if row is None:
                    return  # deleting what is gone is not an error
                check_delete_allowed(row[1], row[2], allowed, claim_id is not None, now)
                # Allowed now: its claim changed between the two statements.
            raise errors.ServiceUnavailable("The message kept changing; try again.")

        await self.d.run(job)

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return
        allowed = set(claim_ids or ())
        now = self.d.clock()

        async def job(conn: asyncpg.Connection) -> None:
            # Locked, so no claim lands between the check and the delete.
            rows = await conn.fetch(
                q.MESSAGE_CLAIM_STATE_FOR_DELETE, rowids, now, project, queue
            )
            for row in rows:
                check_delete_allowed(row[1], row[2], allowed, False, now)
            if rows:
                await conn.execute(q.MESSAGES_DELETE_IDS, [row[0] for row in rows])

        await self.d.run(job, transaction=True)

    async def move(
        self, project: str, src: str, dst: str, ids: Sequence[str], claim_id: str,
        ttl: int | None = None,
    ) -> builtins.list[str]:
        """Atomic: the copies (MESSAGE_POST, outbox included) and the deletes
        are one transaction; the moved rows stay locked until it commits."""
        rowids = self.d.ids.parse_message_ids(ids)
        if not rowids:
            return []
        now = self.d.clock()
        channel, payload = self.d._notify_args(project, dst)

        async def job(conn: asyncpg.Connection) -> list[str]:
            rows = {row[0]: row for row in
                    await conn.fetch(q.MESSAGES_FOR_MOVE, rowids, now, project, src)}
            chosen = [rows[r] for r in rowids if r in rows
                      and rows[r][5] == claim_id and rows[r][6] > now]
            if not chosen:
                return []
            await _lock_queue(conn, project, dst, now)
            new_ids: list[str] = []
            # One MESSAGE_POST per run of one client id: each keeps its own.
            for client_id, run in itertools.groupby(chosen, key=lambda row: row[4]):
                batch = list(run)
                ttls = [ttl if ttl is not None else max(1, round(row[3] - row[2]))
                        for row in batch]
                posted = await conn.fetch(
                    q.MESSAGE_POST, project, dst, now, client_id, [row[1] for row in batch],
                    ttls, [0] * len(batch), channel, payload,
                )
                new_ids += [self.d.ids.message_id(row[0]) for row in posted]
            await conn.execute(q.MESSAGES_DELETE_IDS, [row[0] for row in chosen])
            return new_ids

        moved = await self.d.run(job, transaction=True)
        if moved:
            self.d._wake_watches(project, dst)
        return moved

    async def pop(self, project: str, queue: str, limit: int) -> builtins.list[Message]:
        now = self.d.clock()
        rows = await self.d.fetch(q.MESSAGES_POP, project, queue, now, limit)
        return [message_from_row(self.d.ids, row, now)
                for row in sorted(rows, key=lambda row: row[0])]


class PostgresClaims(base.ClaimController):
    def __init__(self, driver: PostgresDriver) -> None:
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
        if limit <= 0:
            return ClaimResult(None)
        moved = 0
        if dead_letter is None:
            # Pick, mark and record in one statement.
            rows = await self.d.fetch(
                q.CLAIM_CREATE, project, queue, now, limit, claim_id, claim_expires,
                keep_until, ttl, grace,
            )
        else:
            # The count comes back with the rows of the attempt that
            # committed: a retried transaction starts its count afresh.
            rows, moved = await self.d.run(
                lambda conn: self._create_with_dead_letter(
                    conn, project, queue, now, limit, claim_id, ttl, grace, dead_letter
                ),
                transaction=True,
            )
        if not rows:
            return ClaimResult(None, dead_lettered=moved)
        messages = [message_from_row(self.d.ids, row, now)
                    for row in sorted(rows, key=lambda row: row[0])]
        for message in messages:
            message.claim_id = claim_id
        return ClaimResult(claim_id, messages, moved)

    async def _create_with_dead_letter(
        self,
        conn: asyncpg.Connection,
        project: str,
        queue: str,
        now: float,
        limit: int,
        claim_id: str,
        ttl: int,
        grace: int,
        policy: DeadLetterPolicy,
    ) -> tuple[list[asyncpg.Record], int]:
        """The claimed rows, and how many messages were moved to the dead
        letter queue."""
        claim_expires = now + ttl
        claimed: list[asyncpg.Record] = []
        moved = 0
        queue_id = None
        # Dead-lettered messages free their slot, so look again until the
        # claim is full or the queue has nothing left to offer.
        while len(claimed) < limit:
            want = limit - len(claimed)
            rows = await conn.fetch(q.MESSAGES_CLAIMABLE, project, queue, now, want)
            if not rows:
                break
            queue_id = rows[0]["queue_id"]
            dead = [row[0] for row in rows if row["claim_count"] >= policy.max_claim_count]
            taken = [row[0] for row in rows if row["claim_count"] < policy.max_claim_count]
            if dead:
                moved += await _dead_letter(conn, project, dead, policy, now)
            if taken:
                # Marked now, so the next look skips them.
                claimed += await conn.fetch(
                    q.MESSAGES_MARK_CLAIMED, claim_id, claim_expires, claim_expires + grace, taken
                )
            if len(rows) < want:
                break
        if claimed:
            await conn.execute(q.CLAIM_INSERT, claim_id, queue_id, ttl, grace, now, claim_expires)
        return claimed, moved

    async def get(self, project: str, queue: str, claim_id: str) -> Claim:
        now = self.d.clock()
        rows = await self.d.fetch(q.CLAIM_GET, claim_id, now, project, queue)
        if not rows:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")
        first = rows[0]
        return Claim(
            id=first["claim_id_"],
            ttl=first["ttl"],
            grace=first["grace"],
            age=int(now - first["claim_created"]),
            messages=[message_from_row(self.d.ids, tuple(row)[4:], now)
                      for row in rows if row["id"] is not None],
        )

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        now = self.d.clock()
        renewed = await self.d.fetchval(
            q.CLAIM_RENEW, claim_id, ttl, grace, now, now + ttl, now + ttl + grace, project, queue
        )
        if not renewed:
            raise errors.ClaimNotFound(f"Claim {claim_id} does not exist.")

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        await self.d.execute(q.CLAIM_DELETE, claim_id, project, queue)


async def _dead_letter(
    conn: asyncpg.Connection,
    project: str,
    rowids: list[int],
    policy: DeadLetterPolicy,
    now: float,
) -> int:
    """Move messages to the dead letter queue under new ids (so observers
    paging the DLQ by marker see them), or drop them if none is set.
    Returns how many were moved (0 for a drop)."""
    if policy.queue:
        dlq_id = await _lock_queue(conn, project, policy.queue, now)
        expires = now + policy.ttl if policy.ttl else None
        # The rows the INSERT wrote: only messages the DELETE really took.
        return _rowcount(await conn.execute(q.MESSAGES_MOVE, dlq_id, now, expires, rowids))
    await conn.execute(q.MESSAGES_DELETE_IDS, rowids)
    return 0


class PostgresSubscriptions(base.SubscriptionController):
    def __init__(self, driver: PostgresDriver) -> None:
        self.d = driver

    async def create(self, project: str, queue: str, subscription: NewSubscription,
                     confirmation: Callable[[str], dict[str, Any]] | None = None
                     ) -> str | None:
        now = self.d.clock()
        args = (project, queue, subscription.subscriber, int(subscription.ttl),
                _encode(subscription.options), subscription.confirmed, now)
        if confirmation is None:
            row = await self.d.fetchrow(q.SUBSCRIPTION_CREATE, *args)
            return (None if row is None
                    else _public_id(self.d.ids, IdKind.SUBSCRIPTION, row[0], row[1]))

        async def create_and_ask(conn: asyncpg.Connection) -> str | None:
            row = await conn.fetchrow(q.SUBSCRIPTION_CREATE, *args)
            if row is None:
                return None
            subscription_id = _public_id(self.d.ids, IdKind.SUBSCRIPTION, row[0], row[1])
            await conn.fetchrow(
                q.DELIVERY_ENQUEUE, row[0], row[1], project, queue, now,
                DeliveryKind.CONFIRMATION.value, _encode(confirmation(subscription_id)))
            return subscription_id

        return await self.d.run(create_and_ask, transaction=True)

    async def get(self, project: str, queue: str, subscription_id: str) -> base.Subscription:
        parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        now = self.d.clock()
        row = None
        if parsed is not None:
            row = await self.d.fetchrow(q.SUBSCRIPTION_GET, *parsed, project, queue, now)
        if row is None:
            raise _no_subscription(subscription_id)
        return _subscription(self.d.ids, row, now)

    async def find(self, project: str, queue: str, subscriber: str
                   ) -> base.Subscription | None:
        now = self.d.clock()
        row = await self.d.fetchrow(q.SUBSCRIPTION_FIND, project, queue, subscriber, now)
        return None if row is None else _subscription(self.d.ids, row, now)

    async def list(
        self, project: str, queue: str, *, marker: str | None, limit: int
    ) -> list[base.Subscription]:
        now = self.d.clock()
        rows = await self.d.fetch(
            q.SUBSCRIPTION_LIST, project, queue, self.d.ids.marker(IdKind.SUBSCRIPTION, marker),
            now, limit)
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
        parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            raise _no_subscription(subscription_id)
        now = self.d.clock()
        args = (*parsed, project, queue, now, subscriber, None if ttl is None else int(ttl),
                None if options is None else _encode(options))

        async def job(conn: asyncpg.Connection) -> Any:
            try:
                return await conn.fetchval(q.SUBSCRIPTION_UPDATE, *args)
            except asyncpg.UniqueViolationError:
                raise errors.Conflict(
                    f"Queue {queue} already has a subscription for this subscriber.") from None

        if await self.d.run(job) is None:
            raise _no_subscription(subscription_id)

    async def confirm(self, project: str, queue: str, subscription_id: str, confirmed: bool
                      ) -> None:
        parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = await self.d.fetchval(
                q.SUBSCRIPTION_CONFIRM, *parsed, project, queue, self.d.clock(), confirmed)
        if row is None:
            raise _no_subscription(subscription_id)

    async def delete(self, project: str, queue: str, subscription_id: str) -> None:
        parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        if parsed is None:
            return

        async def job(conn: asyncpg.Connection) -> None:
            seq = await conn.fetchval(q.SUBSCRIPTION_DELETE, *parsed, project, queue)
            if seq is not None:
                await conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTIONS, [seq])

        await self.d.run(job, transaction=True)


def _no_subscription(subscription_id: str) -> errors.SubscriptionDoesNotExist:
    return errors.SubscriptionDoesNotExist(f"Subscription {subscription_id} does not exist.")


class PostgresDeliveries(base.DeliveryController):
    def __init__(self, driver: PostgresDriver) -> None:
        self.d = driver

    async def enqueue(
        self,
        project: str,
        queue: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: dict[str, Any],
    ) -> str:
        parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
        row = None
        if parsed is not None:
            row = await self.d.fetchrow(
                q.DELIVERY_ENQUEUE, *parsed, project, queue, self.d.clock(), kind.value,
                _encode(payload))
        if row is None:
            raise _no_subscription(subscription_id)
        return _public_id(self.d.ids, IdKind.DELIVERY, row[0], row[1])

    async def lease(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        if limit <= 0:
            return []
        now = self.d.clock()
        rows = await self.d.fetch(q.DELIVERY_LEASE, now, limit, now + lease_seconds)
        rows.sort(key=lambda row: (row["next_attempt"], row["seq"]))
        return [_delivery(self.d.ids, row) for row in rows]

    async def delivered(self, delivery_id: str) -> None:
        parsed = _parse_public_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_DELIVERED, *parsed)

    async def retry(self, delivery_id: str, *, at: float, error: str) -> None:
        parsed = _parse_public_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_RETRY, *parsed, at, _error_text(error))

    async def dead(self, delivery_id: str, *, error: str) -> None:
        parsed = _parse_public_id(self.d.ids, IdKind.DELIVERY, delivery_id)
        if parsed is not None:
            await self.d.execute(q.DELIVERY_DEAD, *parsed, self.d.clock(), _error_text(error))

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
        after = self.d.ids.marker(IdKind.DELIVERY, marker)
        if subscription_id is None:
            rows = await self.d.fetch(q.DELIVERY_LIST, project, queue, status.value, after, limit)
        else:
            parsed = _parse_public_id(self.d.ids, IdKind.SUBSCRIPTION, subscription_id)
            if parsed is None:
                return []
            rows = await self.d.fetch(q.DELIVERY_LIST_OF_SUBSCRIPTION, project, queue,
                                      status.value, after, limit, *parsed)
        return [_delivery(self.d.ids, row) for row in rows]


__all__ = ["PostgresDriver", "Subscription"]
