"""Group commit: concurrent posts, deletes and claims share statements.

Every post to a queue takes the queue's row lock until it commits (see
queries.py: ids must become visible in id order), so posts to one queue
ran one after another, each waiting for the previous one's COMMIT and its
flush of the WAL. Here a process sends one post statement at a time: the
first post goes at once, alone; the posts that arrive while it runs, to
any queue, wait, and the next statement carries all of them (one
multi-row INSERT, one COMMIT, one flush), as the SQLite writer
(storage/sqlite/writer.py) groups a transaction's jobs. A queue whose
row another transaction holds (another server process's post) is left
out of it; such queues wait for their rows together, in one more
statement, for a bounded time (_EveryQueue's waiting lane). Single
deletes are grouped the same way (one DELETE of many ids, skipping a
message another transaction holds): a consumer deletes
each message it claimed, ten statements and flushes per claim of ten.
Claims without a dead-letter policy take no
queue lock and wait for no row (SKIP LOCKED), but each was its own
statement and COMMIT, and on a busy server the statements' CPU and the
flushes made a claim's p99; one statement, for every queue, deals the
picked messages out to the claims waiting.

Each statement runs outside a transaction block, so its COMMIT has
returned when its rows come back: a write is acknowledged only once
durable.

A statement fails as a whole. When a group fails for something one job's
data may have caused (a value PostgreSQL refuses, a violated constraint,
a deadlock with another process's group), each job of the group runs
again alone, so only the faulty one fails; a failure of the backend
(unreachable, a timeout) fails the group at once, rather than making each
job wait for it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from tidings import errors
from tidings.storage.base import ClaimRequest
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import PostgresCore

# Bounds one statement: its parameters' size, and how much one failure
# sends back to run alone (in messages).
MAX_GROUP_MESSAGES = 2000
# How often one post statement finds its queue gone (deleted between the
# queue's creation and the post) before it gives up.
CREATE_ATTEMPTS = 10
# How long a queue that the statement for every queue found held by
# another transaction (another process's post) sends its posts through
# the waiting lane rather than trying that statement first.
CONTENDED_SECONDS = 1.0
# How long the waiting lane's statement waits for a queue's row before its
# queues go on their own: a queue being deleted or purged holds its row
# for as long as that takes; another process's post, for its COMMIT.
LANE_LOCK_TIMEOUT_MS = 200
# How many such queues are remembered before the ones whose time is up go.
MAX_CONTENDED = 4096
# Causes of a failed group that one job may be to blame for.
RUN_ALONE: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DeadlockDetectedError,
)

Key = tuple[str, str]  # (project, queue)
J = TypeVar("J", bound="_Job")


@dataclass
class _Job:
    future: asyncio.Future[Any] = field(repr=False)

    def size(self) -> int:
        return 1


class _Grouping(Generic[J]):
    """One statement in flight per queue; the jobs arriving meanwhile wait
    for the next, which carries them all (up to MAX_GROUP_MESSAGES)."""

    def __init__(self, driver: PostgresCore) -> None:
        self.d = driver
        self._waiting: dict[Key, list[J]] = {}
        # The queues whose statement is in flight, with the task sending them.
        self._sending: dict[Key, asyncio.Task[None]] = {}

    async def _submit(self, key: Key, job: J) -> Any:
        self._waiting.setdefault(key, []).append(job)
        if key not in self._sending:
            self._sending[key] = asyncio.create_task(self._send(key))
        # A client that goes away cancels only its wait: its write stands.
        return await asyncio.shield(job.future)

    async def _run(self, key: Key, group: list[J]) -> None:
        """One statement for the group; settles each job's future."""
        raise NotImplementedError

    async def _send(self, key: Key) -> None:
        try:
            while self._waiting.get(key):
                group = self._take(key)
                try:
                    await self._run(key, group)
                except errors.TidingsError as exc:
                    if len(group) > 1 and isinstance(exc.__cause__, RUN_ALONE):
                        for job in group:
                            await self._run_alone(key, job)
                    else:
                        _fail(group, exc)
                except BaseException as exc:
                    _fail(group, errors.ServiceUnavailable("The storage failed to write."))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            del self._sending[key]
            # Left only when cancelled (the loop is closing): nobody waits forever.
            _fail(self._waiting.pop(key, []), _closing())

    def _take(self, key: Key, most: int = MAX_GROUP_MESSAGES) -> list[J]:
        """The waiting jobs up to ``most`` messages (at least one job)."""
        waiting = self._waiting[key]
        count, messages = 1, waiting[0].size()
        while count < len(waiting) and messages + waiting[count].size() <= most:
            messages += waiting[count].size()
            count += 1
        group, self._waiting[key] = waiting[:count], waiting[count:]
        return group

    async def _run_alone(self, key: Key, job: J) -> None:
        try:
            await self._run(key, [job])
        except errors.TidingsError as exc:
            _fail([job], exc)


class _EveryQueue(_Grouping[J]):
    """One statement in flight for all queues at a time; the jobs arriving
    meanwhile, whatever their queue, go in the next.

    That statement skips what another transaction holds (a queue's row, a
    message's row): the jobs it leaves out go on their own, waiting for the
    lock, one statement in flight for their queue (_Grouping's) until none
    of that queue's jobs wait; so one busy queue never holds up the others.

    A writer with a waiting lane (``_run_waiting``) sends those instead in
    one more statement, for every such queue, which waits for their rows
    in id order for at most LANE_LOCK_TIMEOUT_MS (then each queue goes on
    its own as above). With two server processes posting to the same
    queues, each finds the queues held by the other's statement: on their
    own, eight queues made eight statements and eight COMMITs in each
    process where one had made one. A queue the statement for every queue
    left out keeps to the lane for CONTENDED_SECONDS, so its posts do not
    first try a statement that would find it held again.
    """

    def __init__(self, driver: PostgresCore) -> None:
        super().__init__(driver)
        # The statement for all queues (self._sending: the queues on their own).
        self._together: asyncio.Task[None] | None = None
        # The waiting lane's statement, the queues it sends (each also in
        # self._sending, so the statement for all queues leaves them out),
        # and until when each queue found held keeps to the lane.
        self._lane: asyncio.Task[None] | None = None
        self._lane_keys: set[Key] = set()
        self._contended: dict[Key, float] = {}

    async def _run_together(self, groups: dict[Key, list[J]]) -> dict[Key, list[J]]:
        """One statement for the groups of several queues; settles the jobs
        it could do and returns the others, by queue."""
        raise NotImplementedError

    async def _run_waiting(self, groups: dict[Key, list[J]]) -> dict[Key, list[J]] | None:
        """The waiting lane's statement: as _run_together, waiting for the
        rows another transaction holds; None when that wait ran out (the
        groups are then left whole). A writer without a lane sends its
        queues on their own instead."""
        raise NotImplementedError

    @property
    def _has_lane(self) -> bool:
        return type(self)._run_waiting is not _EveryQueue._run_waiting

    async def _submit_any(self, key: Key, job: J) -> Any:
        self._waiting.setdefault(key, []).append(job)
        if key not in self._sending:
            if self._contended.get(key, 0.0) > time.monotonic():
                self._to_lane(key)
            elif self._together is None:
                self._together = asyncio.create_task(self._send_together())
        # A client that goes away cancels only its wait: its write stands.
        return await asyncio.shield(job.future)

    async def _send_together(self) -> None:
        groups: dict[Key, list[J]] = {}
        try:
            while groups := self._take_groups(lambda key: key not in self._sending):
                left = await self._run_settled(self._run_together, groups)
                for key, group in left.items():
                    # First in line, waiting for the lock (and a post
                    # creates the queue if it does not exist yet).
                    self._waiting[key] = group + self._waiting.get(key, [])
                    if self._has_lane:
                        self._mark_contended(key)
                        self._to_lane(key)
                    else:
                        self._on_its_own(key)
                for key in groups.keys() - left.keys():
                    if not self._waiting.get(key):
                        self._waiting.pop(key, None)
        except BaseException:
            # Cancelled (the loop is closing): nobody waits forever.
            _fail([job for group in groups.values() for job in group], _closing())
            for key in [key for key in self._waiting if key not in self._sending]:
                _fail(self._waiting.pop(key), _closing())
            raise
        finally:
            self._together = None

    def _mark_contended(self, key: Key) -> None:
        now = time.monotonic()
        if len(self._contended) >= MAX_CONTENDED:
            # Forget the queues whose time is up (a server posting to many
            # queues must not keep one entry for each for ever).
            self._contended = {k: until for k, until in self._contended.items() if until > now}
        self._contended[key] = now + CONTENDED_SECONDS

    def _on_its_own(self, key: Key) -> None:
        self._sending[key] = asyncio.create_task(self._send(key))

    def _to_lane(self, key: Key) -> None:
        self._lane_keys.add(key)
        if self._lane is None:
            self._lane = asyncio.create_task(self._send_waiting())
        self._sending[key] = self._lane

    async def _send_waiting(self) -> None:
        """The waiting lane: one statement in flight for its queues, until
        none of their jobs wait."""
        groups: dict[Key, list[J]] = {}
        try:
            while True:
                for key in [key for key in self._lane_keys if not self._waiting.get(key)]:
                    self._leave_lane(key)
                groups = self._take_groups(self._lane_keys.__contains__)
                if not groups:
                    break
                left = await self._run_settled(self._run_waiting, groups)
                for key, group in left.items():
                    # Missing, or its row held past the wait: on its own.
                    self._leave_lane(key)
                    self._waiting[key] = group + self._waiting.get(key, [])
                    self._on_its_own(key)
        except BaseException:
            _fail([job for group in groups.values() for job in group], _closing())
            for key in list(self._lane_keys):
                _fail(self._waiting.pop(key, []), _closing())
                self._leave_lane(key)
            raise
        finally:
            self._lane = None

    def _leave_lane(self, key: Key) -> None:
        self._lane_keys.discard(key)
        if self._sending.get(key) is self._lane:
            del self._sending[key]
        if not self._waiting.get(key):
            self._waiting.pop(key, None)

    async def _run_settled(
        self, run: Callable[[dict[Key, list[J]]], Awaitable[dict[Key, list[J]] | None]],
        groups: dict[Key, list[J]],
    ) -> dict[Key, list[J]]:
        """``run``, with _send's rule for failures: the groups it leaves (all
        of them for None, or when one job may be to blame for a failure)
        go again, each queue on its own."""
        try:
            left = await run(groups)
        except errors.TidingsError as exc:
            if isinstance(exc.__cause__, RUN_ALONE):
                return groups  # each queue again on its own, then each job
            for group in groups.values():
                _fail(group, exc)
        except Exception:
            for group in groups.values():
                _fail(group, errors.ServiceUnavailable("The storage failed to write."))
        else:
            return groups if left is None else left
        return {}

    def _take_groups(self, eligible: Callable[[Key], bool]) -> dict[Key, list[J]]:
        """The waiting jobs of the ``eligible`` queues, up to
        MAX_GROUP_MESSAGES (at least one queue's group)."""
        groups: dict[Key, list[J]] = {}
        messages = 0
        # _take replaces a key's list, never adds or drops a key: iterating
        # the dict itself is safe, no copy per statement.
        for key, jobs in self._waiting.items():
            if not jobs or not eligible(key):
                continue
            if groups and messages + jobs[0].size() > MAX_GROUP_MESSAGES:
                break
            groups[key] = group = self._take(key, MAX_GROUP_MESSAGES - messages)
            messages += sum(job.size() for job in group)
        return groups


@dataclass
class _Post(_Job):
    client_id: str = ""
    bodies: list[bytes] = field(default_factory=list)
    ttls: list[int] = field(default_factory=list)
    delays: list[int] = field(default_factory=list)

    def size(self) -> int:
        return len(self.bodies)


class PostWriter(_EveryQueue[_Post]):
    """Posts messages. The statement for all queues takes their rows with
    SKIP LOCKED: a queue whose row another transaction holds (another
    process's post, a queue being deleted) goes to the waiting lane, and
    from there on its own if the wait runs out. A server posting to many
    queues makes one COMMIT per statement rather than one per queue."""

    async def post(self, project: str, queue: str, client_id: str, bodies: list[bytes],
                   ttls: list[int], delays: list[int]) -> tuple[list[int], bool]:
        """The new messages' row ids, in the order given, once committed,
        and whether the post wrote a delivery (the queue has subscribers)."""
        future = asyncio.get_running_loop().create_future()
        result: tuple[list[int], bool] = await self._submit_any(
            (project, queue), _Post(future, client_id, bodies, ttls, delays))
        return result

    async def _run_together(self, groups: dict[Key, list[_Post]]) -> dict[Key, list[_Post]]:
        """Posts to the queues it can lock at once; the queues locked
        elsewhere (or missing) are left, whole."""
        left = await self._post(groups, q.MESSAGES_POST_SKIP_LOCKED)
        assert left is not None  # it waits for no lock
        return left

    async def _run_waiting(self, groups: dict[Key, list[_Post]]
                           ) -> dict[Key, list[_Post]] | None:
        """Posts to the queues once their rows are free (in id order); the
        missing queues are left, whole; None when a row stayed held past
        LANE_LOCK_TIMEOUT_MS (nothing was posted)."""
        return await self._post(groups, MESSAGES_POST_WAITING)

    async def _post(self, groups: dict[Key, list[_Post]], sql: str
                    ) -> dict[Key, list[_Post]] | None:
        keys = list(groups)
        posts = [(n, post) for n, key in enumerate(keys, 1) for post in groups[key]]
        arguments = self._arguments(keys, posts, self.d.clock())
        rows = await self.d.run(lambda conn: _fetch_unless_lock_timeout(conn, sql, arguments))
        if rows is None:
            return None
        posted = _settle_posts(posts, rows)
        return {key: group for n, (key, group) in enumerate(groups.items(), 1)
                if n not in posted}

    async def _run(self, key: Key, group: list[_Post]) -> None:
        posts = [(1, post) for post in group]
        for _ in range(CREATE_ATTEMPTS):
            now = self.d.clock()
            rows = await self.d.fetch(q.MESSAGES_POST, *self._arguments([key], posts, now))
            if rows:
                _settle_posts(posts, rows)
                return
            # No such queue yet: create it (lazily, as Zaqar does) and post
            # again; the post itself stays one all-or-nothing statement.
            await self.d.fetchval(q.QUEUE_INSERT, *key, b"{}", "{}", now)
        raise errors.ServiceUnavailable(
            f"Queue {key[1]} was deleted and created repeatedly; try again.")

    def _arguments(self, keys: list[Key], posts: list[tuple[int, _Post]], now: float
                   ) -> list[Any]:
        """MESSAGES_POST's parameters: the queues, then each post's messages
        with the 1-based index of its queue."""
        payloads: list[str | None] = []
        channel = None
        for project, queue in keys:
            channel_of_queue, payload = self.d.notify_args(project, queue)
            channel = channel or channel_of_queue
            payloads.append(payload)
        return [
            [project for project, _ in keys], [queue for _, queue in keys], payloads, now,
            [n for n, post in posts for _ in post.bodies],
            [post.client_id for _, post in posts for _ in post.bodies],
            [body for _, post in posts for body in post.bodies],
            [ttl for _, post in posts for ttl in post.ttls],
            [delay for _, post in posts for delay in post.delays],
            channel,
        ]


# The waiting lane's post statement (PostWriter._run_waiting).
MESSAGES_POST_WAITING = q.messages_post_waiting(LANE_LOCK_TIMEOUT_MS)


async def _fetch_unless_lock_timeout(conn: asyncpg.Connection, sql: str, arguments: list[Any]
                                     ) -> list[asyncpg.Record] | None:
    """The statement's rows; None when it waited for a row past its
    lock_timeout (the expected end of a bounded wait: not a failure of the
    backend, so not the driver's error and its log line)."""
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *arguments)
    except asyncpg.LockNotAvailableError:
        return None
    return rows


def _settle_posts(posts: list[tuple[int, _Post]], rows: list[asyncpg.Record]) -> set[int]:
    """Hands each post its ids (drawn in the statement's order: ascending
    ids are the messages in the order given, post after post, within each
    queue); returns the indexes of the queues that were posted to."""
    ids: dict[int, list[int]] = {}
    delivered: dict[int, bool] = {}
    for row in rows:
        ids.setdefault(row["key"], []).append(row["id"])
        delivered[row["key"]] = row["delivered"]
    start: dict[int, int] = {}
    for n, post in posts:
        if n in ids:
            first = start.get(n, 0)
            start[n] = first + len(post.bodies)
            _settle(post, (ids[n][first:start[n]], bool(delivered[n])))
    return set(ids)


@dataclass
class _Delete(_Job):
    rowid: int = 0
    claim_id: str | None = None


class DeleteWriter(_EveryQueue[_Delete]):
    """Single deletes. The statement for all queues skips the messages
    another transaction holds (a claim being made, a queue being deleted
    or purged); the deletes of those go on their own, by queue."""

    async def delete(self, project: str, queue: str, rowid: int, claim_id: str | None) -> bool:
        """Whether the message went: False when it may not go or is gone
        (the caller looks at its state to say which)."""
        future = asyncio.get_running_loop().create_future()
        deleted: bool = await self._submit_any((project, queue), _Delete(future, rowid, claim_id))
        return deleted

    async def _run_together(self, groups: dict[Key, list[_Delete]]
                            ) -> dict[Key, list[_Delete]]:
        keys = list(groups)
        jobs = [(n, job) for n, key in enumerate(keys, 1) for job in groups[key]]
        rows = await self.d.fetch(
            q.MESSAGES_DELETE_SKIP_LOCKED, [job.rowid for _, job in jobs],
            [job.claim_id for _, job in jobs], [n for n, _ in jobs],
            [project for project, _ in keys], [queue for _, queue in keys], self.d.clock())
        deleted = {row["id"] for row in rows if row["deleted"]}
        skipped = {row["id"] for row in rows if not row["deleted"]}
        left: dict[Key, list[_Delete]] = {}
        for n, job in jobs:
            if job.rowid in skipped:
                left.setdefault(keys[n - 1], []).append(job)
            else:
                _settle(job, job.rowid in deleted)
        return left

    async def _run(self, key: Key, group: list[_Delete]) -> None:
        project, queue = key
        rows = await self.d.fetch(
            q.MESSAGE_DELETE_CHECKED, [job.rowid for job in group], self.d.clock(),
            project, queue, [job.claim_id for job in group])
        deleted = {row[0] for row in rows}
        for job in group:
            _settle(job, job.rowid in deleted)


@dataclass
class _Claim(_Job):
    queue: Key
    request: ClaimRequest

    def size(self) -> int:
        return self.request.limit


# ClaimWriter's one group: claims wait for no lock (see CLAIMS_CREATE), so
# the claims of every queue share the statement in flight.
EVERY_QUEUE: Key = ("", "")


class ClaimWriter(_Grouping[_Claim]):
    """Claims without a dead-letter policy: one statement in flight for all
    queues at a time, and the claims arriving meanwhile go in the next."""

    async def claim(self, project: str, queue: str, request: ClaimRequest
                    ) -> list[asyncpg.Record]:
        """The claimed rows (none: nothing was claimable), once committed."""
        future = asyncio.get_running_loop().create_future()
        rows: list[asyncpg.Record] = await self._submit(
            EVERY_QUEUE, _Claim(future, (project, queue), request))
        return rows

    async def _run(self, key: Key, group: list[_Claim]) -> None:
        queues = list(dict.fromkeys(job.queue for job in group))
        index = {queue: n for n, queue in enumerate(queues, 1)}
        requests = [job.request for job in group]
        rows = await self.d.fetch(
            q.CLAIMS_CREATE, [project for project, _ in queues], [name for _, name in queues],
            max(r.now for r in requests), [index[job.queue] for job in group],
            [r.claim_id for r in requests], [r.limit for r in requests],
            [r.expires for r in requests], [r.keep_until for r in requests],
            [r.ttl for r in requests], [r.grace for r in requests], [r.now for r in requests])
        claimed: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            claimed.setdefault(row["claim_id"], []).append(row)
        for job in group:
            _settle(job, claimed.get(job.request.claim_id, []))


def _settle(job: _Job, result: Any) -> None:
    if not job.future.done():
        job.future.set_result(result)


def _closing() -> errors.ServiceUnavailable:
    return errors.ServiceUnavailable("The storage is closing.")


def _fail(group: list[J], exc: BaseException) -> None:
    for job in group:
        if not job.future.done():
            job.future.set_exception(exc)
