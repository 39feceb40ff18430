"""LISTEN/NOTIFY wake-ups: one listening connection per driver.

Posts send ``pg_notify(channel, "<project>/<queue>")`` in the posting
statement, so the notification is delivered when (and only when) the
messages are committed. A Listener holds one dedicated connection (outside
the pool: a LISTEN connection cannot be shared) and calls every
subscriber's callback with (project, queue).

Notifications are wake-up hints, not a log: while the connection is down
some are lost. After reconnecting, every callback is called once with
(None, None), meaning "anything may have changed; look again". Waiters
should still re-check on a timer of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tidings.storage.common.reconnect import raise_if_cancelled, until_connected
from tidings.storage.postgres import queries as q

log = logging.getLogger(__name__)


def _log_connect_failure(exc: BaseException, pause: float) -> None:
    log.warning("notification connection failed (%s); retrying in %.1fs", exc, pause)

# callback(project, queue); (None, None) after a reconnect. May be async.
Callback = Callable[[str | None, str | None], Any]


def encode_payload(project: str, queue: str) -> str:
    # Queue names never hold "/", so the last "/" splits the payload even
    # when the project id contains one.
    return f"{project}/{queue}"


def decode_payload(payload: str) -> tuple[str, str]:
    project, _, queue = payload.rpartition("/")
    return project, queue


class Subscription:
    """A registered callback; ``close()`` (or leaving ``async with``) stops it."""

    def __init__(self, listener: Listener, callback: Callback) -> None:
        self._listener = listener
        self.callback = callback

    async def close(self) -> None:
        self._listener.remove(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Listener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        *,
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        decode: Callable[[str], tuple[Any, Any]] = decode_payload,
    ) -> None:
        self._connect_fn = connect
        self.channel = channel
        # What the callbacks get for a payload: (project, queue) by default.
        self._decode = decode
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._subs: list[Subscription] = []
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._pending: set[asyncio.Future[Any]] = set()

    async def subscribe(self, callback: Callback) -> Subscription:
        """Register ``callback``; LISTEN is active when this returns, so a
        post committed afterwards is always announced."""
        async with self._start_lock:
            if self._task is None:
                await self._connect()
                self._task = asyncio.create_task(self._supervise(), name="tidings-pg-listener")
        sub = Subscription(self, callback)
        self._subs.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    async def close(self) -> None:
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()
        for future in list(self._pending):
            future.cancel()

    # --- the connection ------------------------------------------------------

    async def _connect(self) -> None:
        conn = await self._connect_fn()
        try:
            self._lost.clear()
            conn.add_termination_listener(lambda _conn: self._lost.set())
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), self.ping_timeout)
        except Exception:  # a dead server cannot say goodbye
            conn.terminate()

    async def _supervise(self) -> None:
        while True:
            raise_if_cancelled()  # a cancel the last ping swallowed still stops us
            try:
                await asyncio.wait_for(self._lost.wait(), self.ping_interval)
            except asyncio.TimeoutError:
                # A silently lost network shows no EOF; a ping notices it.
                try:
                    assert self._conn is not None
                    await self._conn.fetchval(q.PING, timeout=self.ping_timeout)
                    continue
                except Exception:
                    log.warning("notification connection stopped answering; reconnecting")
            await self._drop_connection()
            await until_connected(self._connect, failures=(Exception,), first_delay=0.1,
                                  max_delay=5.0, on_failure=_log_connect_failure)
            log.info("notification connection restored")
            self._dispatch(None, None)  # wake-ups may have been missed meanwhile

    # --- delivery --------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        first, second = self._decode(payload)
        self._dispatch(first, second)

    def has_subscribers(self) -> bool:
        return bool(self._subs)

    def _dispatch(self, project: Any, queue: Any) -> None:
        for sub in list(self._subs):
            try:
                result = sub.callback(project, queue)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("notification callback failed")
                continue
            if inspect.isawaitable(result):
                future = asyncio.ensure_future(result)
                self._pending.add(future)
                future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("notification callback failed", exc_info=future.exception())
