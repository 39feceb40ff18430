"""Group commit: concurrent posts (and deletes) of one queue share one statement.

Every post to a queue takes the queue's row lock until it commits (see
queries.py: ids must become visible in id order), so posts to one queue
ran one after another, each waiting for the previous one's COMMIT and its
flush of the WAL. Here a process sends at most one post statement per
queue at a time: the first post goes at once, alone; the posts that arrive
while it runs wait, and the next statement carries all of them (one
multi-row INSERT, one lock, one COMMIT, one flush), as the SQLite writer
(storage/sqlite/writer.py) groups a transaction's jobs. Single deletes
are grouped the same way (one DELETE of many ids): a consumer deletes
each message it claimed, ten statements and flushes per claim of ten.
So are claims without a dead-letter policy: they take no queue lock
(SKIP LOCKED), but each was its own statement and COMMIT, and on a busy
server the statements' CPU and the flushes made a claim's p99; one
statement deals the picked messages out to the group's claims.

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
            _fail(self._waiting.pop(key, []), errors.ServiceUnavailable("The storage is closing."))

    def _take(self, key: Key) -> list[J]:
        """The waiting jobs up to MAX_GROUP_MESSAGES (at least one)."""
        waiting = self._waiting[key]
        count, messages = 1, waiting[0].size()
        while count < len(waiting) and messages + waiting[count].size() <= MAX_GROUP_MESSAGES:
            messages += waiting[count].size()
            count += 1
        group, self._waiting[key] = waiting[:count], waiting[count:]
        return group

    async def _run_alone(self, key: Key, job: J) -> None:
        try:
            await self._run(key, [job])
        except errors.TidingsError as exc:
            _fail([job], exc)


@dataclass
class _Post(_Job):
    client_id: str = ""
    bodies: list[bytes] = field(default_factory=list)
    ttls: list[int] = field(default_factory=list)
    delays: list[int] = field(default_factory=list)

    def size(self) -> int:
        return len(self.bodies)


class PostWriter(_Grouping[_Post]):
    """Posts messages, grouping the concurrent posts of one queue."""

    async def post(self, project: str, queue: str, client_id: str, bodies: list[bytes],
                   ttls: list[int], delays: list[int]) -> tuple[list[int], bool]:
        """The new messages' row ids, in the order given, once committed,
        and whether the post wrote a delivery (the queue has subscribers)."""
        future = asyncio.get_running_loop().create_future()
        result: tuple[list[int], bool] = await self._submit(
            (project, queue), _Post(future, client_id, bodies, ttls, delays))
        return result

    async def _run(self, key: Key, group: list[_Post]) -> None:
        project, queue = key
        client_ids = [post.client_id for post in group for _ in post.bodies]
        bodies = [body for post in group for body in post.bodies]
        ttls = [ttl for post in group for ttl in post.ttls]
        delays = [delay for post in group for delay in post.delays]
        channel, payload = self.d.notify_args(project, queue)
        for _ in range(CREATE_ATTEMPTS):
            now = self.d.clock()
            rows = await self.d.fetch(q.MESSAGE_POST, project, queue, now, client_ids, bodies,
                                      ttls, delays, channel, payload)
            if rows:
                # Ids are drawn in the statement's order: ascending ids are
                # the messages in the order given, post after post.
                ids = [row[0] for row in rows]
                delivered = bool(rows[0]["delivered"])
                start = 0
                for post in group:
                    end = start + len(post.bodies)
                    _settle(post, (ids[start:end], delivered))
                    start = end
                return
            # No such queue yet: create it (lazily, as Zaqar does) and post
            # again; the post itself stays one all-or-nothing statement.
            await self.d.fetchval(q.QUEUE_INSERT, project, queue, b"{}", "{}", now)
        raise errors.ServiceUnavailable(
            f"Queue {queue} was deleted and created repeatedly; try again.")


@dataclass
class _Delete(_Job):
    rowid: int = 0
    claim_id: str | None = None


class DeleteWriter(_Grouping[_Delete]):
    """Single deletes, grouping the concurrent deletes of one queue."""

    async def delete(self, project: str, queue: str, rowid: int, claim_id: str | None) -> bool:
        """Whether the message went: False when it may not go or is gone
        (the caller looks at its state to say which)."""
        future = asyncio.get_running_loop().create_future()
        deleted: bool = await self._submit((project, queue), _Delete(future, rowid, claim_id))
        return deleted

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
    request: ClaimRequest

    def size(self) -> int:
        return self.request.limit


class ClaimWriter(_Grouping[_Claim]):
    """Claims without a dead-letter policy, grouping the concurrent claims
    of one queue."""

    async def claim(self, project: str, queue: str, request: ClaimRequest
                    ) -> list[asyncpg.Record]:
        """The claimed rows (none: nothing was claimable), once committed."""
        future = asyncio.get_running_loop().create_future()
        rows: list[asyncpg.Record] = await self._submit(
            (project, queue), _Claim(future, request))
        return rows

    async def _run(self, key: Key, group: list[_Claim]) -> None:
        project, queue = key
        requests = [job.request for job in group]
        rows = await self.d.fetch(
            q.CLAIMS_CREATE, project, queue, max(r.now for r in requests),
            sum(r.limit for r in requests), [r.claim_id for r in requests],
            [r.limit for r in requests], [r.expires for r in requests],
            [r.keep_until for r in requests], [r.ttl for r in requests],
            [r.grace for r in requests], [r.now for r in requests])
        claimed: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            claimed.setdefault(row["claim_id"], []).append(row)
        for job in group:
            _settle(job, claimed.get(job.request.claim_id, []))


def _settle(job: _Job, result: Any) -> None:
    if not job.future.done():
        job.future.set_result(result)


def _fail(group: list[J], exc: BaseException) -> None:
    for job in group:
        if not job.future.done():
            job.future.set_exception(exc)
