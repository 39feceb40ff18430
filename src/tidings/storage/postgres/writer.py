"""Group commit for posts: concurrent posts to one queue share one statement.

Every post to a queue takes the queue's row lock until it commits (see
queries.py: ids must become visible in id order), so posts to one queue
run one after another, each waiting for the previous one's COMMIT and its
flush of the WAL. Here a process sends at most one post statement per
queue at a time: the first post goes at once, alone; the posts that arrive
while it runs wait, and the next statement carries all of them (one
multi-row INSERT, one lock, one COMMIT, one flush), as the SQLite writer
(storage/sqlite/writer.py) groups a transaction's jobs.

The statement runs outside a transaction block, so its COMMIT has
returned when its rows come back: a post is acknowledged only once durable.

A statement fails as a whole. When a group fails for something its own
data may have caused (a value PostgreSQL refuses, a violated constraint),
each post of the group runs again alone, so only the faulty one fails; a
failure of the backend (unreachable, a timeout) fails the group at once,
rather than making each post wait for it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from tidings import errors
from tidings.storage.postgres import queries as q
from tidings.storage.postgres.core import PostgresCore

# Bounds one statement: its parameters' size, and how much one failure
# sends back to run alone.
MAX_GROUP_MESSAGES = 2000
# How often one post statement finds its queue gone (deleted between the
# queue's creation and the post) before it gives up.
CREATE_ATTEMPTS = 10
# Causes of a failed group that one post's data may be to blame for.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)


@dataclass
class _Post:
    client_id: str
    bodies: list[bytes]
    ttls: list[int]
    delays: list[int]
    future: asyncio.Future[list[int]] = field(repr=False)


class PostWriter:
    """Posts messages to queues, grouping the concurrent posts of one queue."""

    def __init__(self, driver: PostgresCore) -> None:
        self.d = driver
        # (project, queue) -> posts waiting for that queue's next statement
        self._waiting: dict[tuple[str, str], list[_Post]] = {}
        # The queues whose statement is in flight, with the task sending them.
        self._sending: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def post(self, project: str, queue: str, client_id: str, bodies: list[bytes],
                   ttls: list[int], delays: list[int]) -> list[int]:
        """The new messages' row ids, in the order given, once committed."""
        key = (project, queue)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(_Post(client_id, bodies, ttls, delays, future))
        if key not in self._sending:
            self._sending[key] = asyncio.create_task(self._send(key))
        # A client that goes away cancels only its wait: its post stands.
        return await asyncio.shield(future)

    async def _send(self, key: tuple[str, str]) -> None:
        try:
            while self._waiting.get(key):
                group = self._take(key)
                try:
                    await self._post_group(key, group)
                except errors.TidingsError as exc:
                    if len(group) > 1 and isinstance(exc.__cause__, DATA_ERRORS):
                        for one in group:
                            await self._post_alone(key, one)
                    else:
                        _fail(group, exc)
                except BaseException as exc:
                    _fail(group, errors.ServiceUnavailable("The storage failed to write."))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            del self._sending[key]
            for post in self._waiting.pop(key, []):
                # Only when cancelled (the loop is closing): nobody waits forever.
                _fail([post], errors.ServiceUnavailable("The storage is closing."))

    def _take(self, key: tuple[str, str]) -> list[_Post]:
        """The waiting posts up to MAX_GROUP_MESSAGES (at least one)."""
        waiting = self._waiting[key]
        size, messages = 1, len(waiting[0].bodies)
        while size < len(waiting) and messages + len(waiting[size].bodies) <= MAX_GROUP_MESSAGES:
            messages += len(waiting[size].bodies)
            size += 1
        group, self._waiting[key] = waiting[:size], waiting[size:]
        return group

    async def _post_alone(self, key: tuple[str, str], post: _Post) -> None:
        try:
            await self._post_group(key, [post])
        except errors.TidingsError as exc:
            _fail([post], exc)

    async def _post_group(self, key: tuple[str, str], group: list[_Post]) -> None:
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
                start = 0
                for post in group:
                    end = start + len(post.bodies)
                    if not post.future.done():
                        post.future.set_result(ids[start:end])
                    start = end
                return
            # No such queue yet: create it (lazily, as Zaqar does) and post
            # again; the post itself stays one all-or-nothing statement.
            await self.d.fetchval(q.QUEUE_INSERT, project, queue, b"{}", "{}", now)
        raise errors.ServiceUnavailable(
            f"Queue {queue} was deleted and created repeatedly; try again.")


def _fail(group: list[_Post], exc: BaseException) -> None:
    for post in group:
        if not post.future.done():
            post.future.set_exception(exc)
