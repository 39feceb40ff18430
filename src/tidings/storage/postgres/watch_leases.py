"""The leases a process holds on the queues it watches (a long poll).

A post NOTIFYs only while its queue's row says someone watches it
(queries.py, "watch leases", says why and why no wake-up is lost). A
process takes the lease before a watch's first read and renews it while a
watch waits; one lease serves every watch of the queue in the process,
renewed once half its length has gone. A queue that does not exist yet
cannot hold a lease; its watches try again every
queries.MISSING_QUEUE_RETRY_SECONDS, well within the
NEW_QUEUE_WATCHED_SECONDS a new queue starts with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tidings.storage.postgres import queries as q

# How many queues' renewal times are kept before the past ones go.
MAX_REMEMBERED = 4096

Key = tuple[str, str]  # (project, queue)
# Takes or renews the lease on a queue for so many seconds: None when the
# queue does not exist, else whether the previous lease had lapsed.
Renew = Callable[[str, str, float], Awaitable[bool | None]]


class WatchLeases:
    """This process's leases, by the loop time each must be renewed by."""

    def __init__(self, renew: Renew, lease_seconds: float = q.WATCH_LEASE_SECONDS) -> None:
        self._renew = renew
        self.lease_seconds = lease_seconds
        self._renew_by: dict[Key, float] = {}

    def renew_by(self, key: Key) -> float:
        """The loop time by which a watch of ``key`` must renew its lease."""
        return self._renew_by.get(key, 0.0)

    async def hold(self, key: Key) -> bool:
        """Make sure a lease covers ``key`` for at least half its length
        (a queue that does not exist: try again soon). True when the lease
        had lapsed: a post may then have gone without a NOTIFY, so a
        waiting watch should read the queue again."""
        asked = asyncio.get_running_loop().time()
        if asked < self._renew_by.get(key, 0.0):
            return False
        lapsed = await self._renew(key[0], key[1], self.lease_seconds)
        if len(self._renew_by) >= MAX_REMEMBERED:
            self._forget_past(asked)
        if lapsed is None:  # no such queue (yet)
            self._renew_by[key] = asked + q.MISSING_QUEUE_RETRY_SECONDS
            return False
        self._renew_by[key] = asked + self.lease_seconds / 2
        return lapsed

    def _forget_past(self, now: float) -> None:
        for key, due in list(self._renew_by.items()):
            if due <= now:
                del self._renew_by[key]
