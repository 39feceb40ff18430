"""Long polling: ``wait`` seconds on message listing and claim creation.

The read is done inside ``storage.watch`` so that a post landing between
the read and the wait still wakes the waiter. A wake-up that reads nothing
(the post was the reader's own message, or another reader took it) waits
again, on a fresh watch, for what is left of ``wait``; when ``wait`` runs
out the queue is read one last time. Nothing polls: each wait ends on a
post or on the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tidings import errors
from tidings.api.context import Context

T = TypeVar("T")


def check_wait(ctx: Context, wait: Any) -> float:
    """The ``wait`` of a request in seconds (0 when absent)."""
    if wait is None:
        return 0.0
    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        raise errors.InvalidBody("wait must be a number of seconds.")
    maximum = ctx.limits.max_wait
    if not 0 <= wait <= maximum:
        raise errors.ValidationFailed(f"wait must be at least 0 and at most {maximum} seconds.")
    return float(wait)


async def read_or_wait(ctx: Context, queue: str, wait: float,
                       read: Callable[[], Awaitable[T]], empty: Callable[[T], bool]) -> T:
    """``read()``, and if that is ``empty`` wait up to ``wait`` seconds for
    a post to the queue and read again."""
    if wait <= 0:
        return await read()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        async with ctx.storage.watch(ctx.project, queue) as watch:
            result = await read()
            remaining = deadline - loop.time()
            if not empty(result) or remaining <= 0:
                return result
            if not await watch.wait(remaining):
                return await read()
