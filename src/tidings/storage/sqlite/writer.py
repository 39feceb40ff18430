"""Group commit: the writes of concurrent requests share one transaction.

SQLite allows one writer at a time, and a durable commit costs an fsync.
Each write is a job (a function of the connection). Jobs run on the event
loop's thread, one after another, inside the open transaction: a job is a
few microseconds of SQLite calls, and running it here avoids a handoff of
the GIL per statement. Only COMMIT, which waits for the disk, goes to a
helper thread; while it runs, new jobs gather for the next transaction, so
one fsync serves everyone who was waiting (group commit).

``on_commit`` runs on the loop after each transaction ends, before the
jobs' futures resolve: the driver wakes queue watches there, once the
posts they wait for are visible to readers.

A full disk (SQLITE_FULL) refuses the writes it stops with StorageFull
(507: "out of space"), logged as one line, and sets ``out_of_space``; the
driver's health reads it, and clears it once the disk has room again.
Nothing is half written: the transaction is rolled back as for any other
failure.

A job that raises undoes only its own writes. Jobs first run together
with no savepoints (two statements fewer per job: a tenth of a small
post's storage time); when one of them raises, the transaction is rolled
back and the group runs again with a savepoint around each job. Jobs are
functions of the connection and of values taken before they were queued,
so running one twice gives the same writes.

A job's future resolves after COMMIT returns: an acknowledged write is on
disk. Jobs that may touch many rows (queue deletion, purge, garbage
collection) are marked heavy and run with their commit in the helper
thread, so they never stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from typing import Any, Callable, TypeVar

from tidings.errors import ServiceUnavailable, StorageFull, TidingsError

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
Outcome = tuple["asyncio.Future[Any]", Any, "BaseException | None"]

log = logging.getLogger(__name__)

# Bounds how long one transaction keeps the loop busy, and how much one
# failed COMMIT takes down with it.
MAX_GROUP = 512
# How long BEGIN waits for another process's write lock (a second server on
# the same file, or `tidings gc`); that wait happens off the event loop.
LOCK_WAIT_MS = 10_000
# How often a writer waiting for that lock tries again (see _begin_waiting).
LOCK_POLL_SECONDS = 0.0002
OUT_OF_SPACE = ("The storage is out of space: the write was not stored. Writes succeed "
                "again once space is freed on the disk holding the database.")


def is_out_of_space(exc: BaseException) -> bool:
    """SQLITE_FULL: the disk (or the file's size limit) has no room left."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, sqlite3.Error) and "disk is full" in str(exc)


class CommitThread:
    """The one thread that runs what must not block the loop: COMMIT (the
    fsync), heavy jobs, a BEGIN that waits for another process's lock.

    Not a ThreadPoolExecutor: its submit and its concurrent Future (a
    Condition, callbacks chained into an asyncio Future) cost about 100,000
    instructions a commit, a sixth of a whole post when each post is its
    own commit (scripts/bench_instructions.sh). Here a call is a tuple put
    on a SimpleQueue and its result one call_soon_threadsafe.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...],
                                             asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="tidings-commit", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` in the thread; its result (or exception) on the loop."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._calls.put((fn, args, future))
        return future

    def stop(self) -> None:
        """Let the calls queued so far finish, then end the thread."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args, future = call
            try:
                outcome: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (None, exc)
            try:
                self._loop.call_soon_threadsafe(_resolve, future, *outcome)
            except RuntimeError:  # the loop is closed: nobody awaits the result
                return


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Writer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Job, asyncio.Future[Any], bool]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._thread: CommitThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # What the jobs of the open transaction tell each other (the claims'
        # scan floors, see SqliteClaims.create; the queues' row ids, see
        # core.find_queue); emptied at every BEGIN and whenever a job's
        # writes are undone.
        self.notes: dict[Any, Any] = {}
        # Set by a write refused for lack of space; the driver clears it
        # when the disk has room again (a small write succeeding proves
        # little: a nearly full disk takes small writes and refuses posts).
        self.out_of_space = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = CommitThread(self._loop)
        self._conn = self._connect()
        # On the loop thread a lock must never be waited for; see _begin.
        self._conn.execute("PRAGMA busy_timeout = 0")

    async def stop(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    async def run(self, job: Callable[[sqlite3.Connection], T], *, heavy: bool = False) -> T:
        """Run ``job`` in the next transaction; return its result once that
        transaction is committed."""
        if self._conn is None or self._loop is None:
            raise ServiceUnavailable("The storage is not open.")
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((job, future, heavy))
        if self._flushing is None:
            self._flushing = self._loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                group = self._take_group()
                if group[0][2]:
                    outcomes = await self._commits().call(self._commit_in_thread, group)
                else:
                    outcomes = await self._commit_on_loop(group)
                if any(isinstance(error, StorageFull) for _, _, error in outcomes):
                    self.out_of_space = True
                if self._on_commit is not None:
                    try:
                        self._on_commit()
                    except Exception:
                        log.exception("sqlite: the after-commit hook failed")
                _settle(outcomes)
        finally:
            self._flushing = None

    def _take_group(self) -> list[tuple[Job, asyncio.Future[Any], bool]]:
        """The next run of light jobs, or one heavy job alone."""
        if self._pending[0][2]:
            return [self._pending.pop(0)]
        size = 0
        while size < len(self._pending) and size < MAX_GROUP and not self._pending[size][2]:
            size += 1
        group, self._pending = self._pending[:size], self._pending[size:]
        return group

    async def _commit_on_loop(self, group: list[tuple[Job, asyncio.Future[Any], bool]]
                              ) -> list[Outcome]:
        conn = self._conn
        assert conn is not None
        try:
            await self._begin(conn)
            outcomes = _run_together(conn, group)
            if outcomes is None:
                conn.execute("ROLLBACK")
                await self._begin(conn)
                outcomes = [self._run_job(conn, job, future) for job, future, _ in group]
            await self._commits().call(conn.execute, "COMMIT")
        except sqlite3.Error as exc:
            return _fail_group(conn, group, exc)
        return outcomes

    async def _begin(self, conn: sqlite3.Connection) -> None:
        self.notes.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            # Another process holds the write lock: wait for it off the loop.
            await self._commits().call(_begin_waiting, conn)

    def _commits(self) -> CommitThread:
        assert self._thread is not None, "the writer is started before jobs are queued"
        return self._thread

    def _run_job(self, conn: sqlite3.Connection, job: Job, future: asyncio.Future[Any]
                 ) -> Outcome:
        outcome = _run_job(conn, job, future)
        if outcome[2] is not None:
            # Its writes were undone: what it noted (a queue it created, a
            # claim floor past rows it claimed) may no longer hold.
            self.notes.clear()
        return outcome

    def _commit_in_thread(self, group: list[tuple[Job, asyncio.Future[Any], bool]]
                          ) -> list[Outcome]:
        conn = self._conn
        assert conn is not None
        self.notes.clear()
        try:
            _begin_waiting(conn)
            outcomes = [self._run_job(conn, job, future) for job, future, _ in group]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return _fail_group(conn, group, exc)
        return outcomes


def _begin_waiting(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, retried every LOCK_POLL_SECONDS for LOCK_WAIT_MS.

    Not SQLite's busy_timeout: its handler sleeps 1, 2, 5, 10 ... 100 ms
    between attempts, and a second process (``serve --workers 2``) that
    commits every few milliseconds keeps winning the lock while this one
    sleeps: the p99 of a post went from 8 to 380 ms. A short, even poll
    takes the lock within a fraction of a millisecond of its release, for
    a few microseconds of CPU per attempt.
    """
    deadline = time.monotonic() + LOCK_WAIT_MS / 1000
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) \
                    or time.monotonic() >= deadline:
                raise
        time.sleep(LOCK_POLL_SECONDS)


def _run_together(conn: sqlite3.Connection,
                  group: list[tuple[Job, asyncio.Future[Any], bool]]) -> list[Outcome] | None:
    """Run the jobs one after another in the open transaction; None as soon
    as one raises, its writes half done: the caller rolls back."""
    outcomes: list[Outcome] = []
    for job, future, _ in group:
        try:
            outcomes.append((future, job(conn), None))
        except Exception:  # noqa: BLE001 - the savepoint run reports it
            return None
    return outcomes


def _run_job(conn: sqlite3.Connection, job: Job, future: asyncio.Future[Any]) -> Outcome:
    conn.execute("SAVEPOINT job")
    try:
        result = job(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        if is_out_of_space(exc):
            log.error("sqlite: a write was refused: %s", exc)
            exc = StorageFull(OUT_OF_SPACE)
        elif not isinstance(exc, TidingsError):
            log.exception("sqlite: a write failed")
            exc = ServiceUnavailable("The storage failed to write.")
        return future, None, exc
    conn.execute("RELEASE job")
    return future, result, None


def _fail_group(conn: sqlite3.Connection, group: list[tuple[Job, asyncio.Future[Any], bool]],
                exc: sqlite3.Error) -> list[Outcome]:
    """Every request of a failed group gets a 503; none waits forever."""
    log.error("sqlite: a group of %d writes failed: %s", len(group), exc)
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    error: ServiceUnavailable = (StorageFull(OUT_OF_SPACE) if is_out_of_space(exc)
                                 else ServiceUnavailable("The storage failed to commit the write."))
    return [(future, None, error) for _, future, _ in group]


def _settle(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        # A client that went away cancelled its future; its write stands.
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
