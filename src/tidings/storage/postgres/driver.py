"""The PostgreSQL driver (asyncpg, a connection pool).

A thin runner: every statement is in queries.py; the controllers
(queues.py, messages.py, claims.py, subscriptions.py, deliveries.py) pick
one, bind the clock's reading and the arguments, and shape the rows; this
module holds the pool, the life cycle, the listeners, health and gc. Each
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
queries.MESSAGES_POST). Subscription and delivery ids are a row's sequence
number (16 hex digits, so ids order by creation) and 8 random hex digits.
``watch`` rides on the LISTEN/NOTIFY listener: one listener callback per
driver dispatches to the in-process watches keyed by (project, queue).
Posts NOTIFY only to queues a process watches: a watch holds a lease on
its queue's row (watch_leases.py; queries.py says why).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Self, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from tidings import errors
from tidings.config import DEAD_RETENTION
from tidings.storage import base
from tidings.storage.base import (
    Capability,
    Clock,
    system_clock,
)
from tidings.storage.common.ids import IdCodec
from tidings.storage.common.metadata_cache import METADATA_CHANNEL
from tidings.storage.common.opened import opened
from tidings.storage.common.url_options import UrlOptions
from tidings.storage.common.watch import EventWatch
from tidings.storage.postgres import queries as q
from tidings.storage.postgres import schema
from tidings.storage.postgres.claims import PostgresClaims
from tidings.storage.postgres.core import RETRIES, rowcount
from tidings.storage.postgres.deliveries import PostgresDeliveries
from tidings.storage.postgres.listener import Callback, Listener, Subscription, encode_payload
from tidings.storage.postgres.messages import PostgresMessages
from tidings.storage.postgres.queues import PostgresQueues
from tidings.storage.postgres.subscriptions import PostgresSubscriptions
from tidings.storage.postgres.watch_leases import WatchLeases

log = logging.getLogger(__name__)

T = TypeVar("T")
GC_BATCH = 5000
HEALTH_QUEUES = 1000
HEALTH_COUNT_CAP = 100_000
# pg_notify refuses payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD = 7900

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
UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


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
        self.queues: PostgresQueues = PostgresQueues(self)
        self.messages = PostgresMessages(self)
        self.claims = PostgresClaims(self)
        self.subscriptions = PostgresSubscriptions(self)
        self.deliveries = PostgresDeliveries(self)
        # watch(): the open watches by (project, queue), and the one
        # listener callback that wakes them.
        self._watches: dict[tuple[str, str], set[PostgresWatch]] = {}
        self._watch_subscription: Subscription | None = None
        self._watch_lock = asyncio.Lock()
        self.watch_leases = WatchLeases(self._renew_watch_lease)
        # listen(): one LISTEN connection per bus channel of this process.
        self._bus_listeners: dict[str, Listener] = {}
        self._bus_lock = asyncio.Lock()
        # What open() listens to for the life of the driver.
        self._listening = AsyncExitStack()

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
        return opened(self._ids)

    # --- life cycle -------------------------------------------------------

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size,
                    reset=_keep_session, **self._connect_kwargs(),
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
            await self._hear_metadata_changes()
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> int:
        now = self.clock()
        return await self._on_connection(lambda conn: schema.upgrade(conn, now))

    async def schema_status(self) -> base.SchemaStatus:
        return base.SchemaStatus(await self._on_connection(schema.stored_version),
                                 schema.VERSION)

    async def _on_connection(self, job: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``job`` on the pool once open; before, on a connection of its
        own, closed after (migrate and schema_status work before open)."""
        if self._pool is not None:
            return await self.run(job)
        try:
            async with asyncio.timeout(self.deadline):
                conn = await asyncpg.connect(self.dsn, **self._connect_kwargs())
                try:
                    return await job(conn)
                finally:
                    await conn.close()
        except BACKEND_ERRORS as exc:
            raise self._unavailable(exc) from exc

    async def _hear_metadata_changes(self) -> None:
        """The metadata cache hears other processes' changes (else the bound holds)."""
        try:
            await self._listening.enter_async_context(
                self.listen(METADATA_CHANNEL, self.queues.heard_change))
        except errors.ServiceUnavailable:
            log.warning("postgres: no LISTEN for metadata changes; other processes' "
                        "changes are seen within the cache's bound")

    async def close(self) -> None:
        await self._listening.aclose()
        self._watch_subscription = None
        self.wake_watches(None, None)
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
            messages = rowcount(await self.execute(q.GC_EXPIRED_MESSAGES, now, GC_BATCH))
            claims = await self.fetchval(q.GC_EXPIRED_CLAIMS, now, GC_BATCH)
            subscriptions, deliveries = await self.run(
                lambda conn: _gc_subscriptions(conn, now), transaction=True)
            dead = rowcount(await self.execute(
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
                        self._watch_subscription = await self.subscribe(self.wake_watches)
            # Listening already: a post that sees the lease is heard.
            await self.keep_watching(watch.key)
        except BaseException:
            self._watch_stop(watch)
            raise

    async def keep_watching(self, key: tuple[str, str]) -> bool:
        """Take or renew the lease that makes posts to ``key`` NOTIFY (none
        under notify=false: posts never do); True when it had lapsed."""
        if not self.notify:
            return False
        return await self.watch_leases.hold(key)

    async def _renew_watch_lease(self, project: str, queue: str, seconds: float
                                 ) -> bool | None:
        row = await self.fetchrow(q.QUEUE_WATCH_LEASE, project, queue, seconds)
        return None if row is None else bool(row["lapsed"])

    def _watch_stop(self, watch: PostgresWatch) -> None:
        watches = self._watches.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.key]

    def wake_watches(self, project: str | None, queue: str | None) -> None:
        """The listener's callback; (None, None) after a reconnect (or at
        close) wakes every watch, since posts may have gone unheard."""
        if project is None or queue is None:
            woken = [w for watches in self._watches.values() for w in watches]
        else:
            woken = list(self._watches.get((project, queue), ()))
        for watch in woken:
            watch.event.set()

    def notify_args(self, project: str, queue: str) -> tuple[str | None, str | None]:
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

    async def wait(self, timeout: float) -> bool:
        """EventWatch.wait, renewing the queue's lease while it waits. A
        lease found lapsed, or one that cannot be renewed (the server is
        unreachable), wakes the watch: a post may have gone unheard, so the
        caller reads the queue again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            renew_by = self.driver.watch_leases.renew_by(self.key)
            if not self.driver.notify or renew_by >= deadline:
                return await super().wait(deadline - loop.time())
            if await super().wait(renew_by - loop.time()):
                return True
            try:
                if await self.driver.keep_watching(self.key):
                    return True
            except errors.ServiceUnavailable:
                return True

    async def __aexit__(self, *exc: object) -> None:
        self.driver._watch_stop(self)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset query at release (a round trip per operation) for session
    state pooled connections never take: LISTEN has connections of its own,
    no SET is used. The pool still rolls back an open transaction."""


async def _gc_subscriptions(conn: asyncpg.Connection, now: float) -> tuple[int, int]:
    """A batch of expired subscriptions and their deliveries (in a
    transaction): (subscriptions, deliveries) removed."""
    seqs = [row[0] for row in await conn.fetch(q.GC_EXPIRED_SUBSCRIPTIONS, now, GC_BATCH)]
    if not seqs:
        return 0, 0
    status = await conn.execute(q.DELIVERIES_DELETE_OF_SUBSCRIPTIONS, seqs)
    return len(seqs), rowcount(status)


__all__ = ["PostgresDriver", "Subscription"]
