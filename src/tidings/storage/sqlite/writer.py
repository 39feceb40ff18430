"""One writer thread that commits the writes of concurrent requests together.

SQLite allows one writer at a time, and a durable commit costs an fsync. So
every write is a job (a function of the connection) handed to this thread;
the thread takes all jobs waiting, runs each inside its own savepoint, and
commits them in one transaction: one fsync for the whole group (group
commit). A job that raises rolls back only its savepoint, so one bad request
never undoes another's write. A request's future resolves only after COMMIT
returns, so an acknowledged write is on disk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from typing import Any, Callable, TypeVar

from tidings.errors import ServiceUnavailable, TidingsError

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

log = logging.getLogger(__name__)

_STOP = object()
# Bounds how long one transaction holds the lock and how much a failed
# COMMIT can take down with it.
MAX_GROUP = 512


class Writer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="tidings-sqlite-writer", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in the writer's next transaction; return its result
        once the transaction is committed."""
        if self._thread is None:
            raise ServiceUnavailable("The storage is not open.")
        future: asyncio.Future[T] = self._loop.create_future()  # type: ignore[union-attr]
        self._jobs.put((job, future))
        return await future

    # --- the thread -------------------------------------------------------

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            while True:
                first = self._jobs.get()
                if first is _STOP:
                    return
                group = [first]
                stop_after = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop_after = True
                        break
                    group.append(item)
                outcomes = self._commit_group(conn, group)
                self._loop.call_soon_threadsafe(_settle, outcomes)  # type: ignore[union-attr]
                if stop_after:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[Any]) -> list[Any]:
        """Run and commit one group; every future gets an outcome, whatever
        fails, so no request waits forever."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future in group:
                outcomes.append(self._run_job(conn, job, future))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("sqlite: a group of %d writes failed: %s", len(group), exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            error = ServiceUnavailable("The storage failed to commit the write.")
            return [(future, None, error) for _, future in group]
        return outcomes

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: Job, future: asyncio.Future[Any]
                 ) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
        conn.execute("SAVEPOINT job")
        try:
            result = job(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            if not isinstance(exc, TidingsError):
                log.exception("sqlite: a write failed")
                exc = ServiceUnavailable("The storage failed to write.")
            return future, None, exc
        conn.execute("RELEASE job")
        return future, result, None


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        # A client that went away cancelled its future; its write stands.
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
