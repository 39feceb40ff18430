"""Reconnecting in the background without outliving a cancel.

The bus listeners (Redis pub/sub, PostgreSQL LISTEN) keep a connection in
a background task that connects again, with a growing pause, whenever the
connection is lost; closing the driver cancels that task and waits for it.

A cancel can arrive while a try is inside the client library, and some
libraries and ``asyncio.wait_for`` (before Python 3.12) turn it into their
own error, or into a success when the try completed at the same moment.
The loop then went on (sleep, try again, wait for the next loss) with the
cancel spent, and the driver's close waited forever: a hang at shutdown,
seen in the tests when Redis was stopped and restarted. The task still
knows it was asked to stop (``Task.cancelling()``), so the loop asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop, even
    when the cancel itself was swallowed by what the task awaited."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def until_connected(
    connect: Callable[[], Awaitable[None]],
    *,
    failures: tuple[type[BaseException], ...],
    first_delay: float,
    max_delay: float,
    on_failure: Callable[[BaseException, float], None] | None = None,
) -> None:
    """Call ``connect`` until it succeeds, pausing ``first_delay`` seconds
    after the first failure and twice as long after each next one, up to
    ``max_delay``. ``on_failure(error, pause)`` is told of each failure.
    Stops with CancelledError as soon as the task was cancelled."""
    delay = first_delay
    while True:
        try:
            await connect()
        except failures as exc:
            raise_if_cancelled()
            if on_failure is not None:
                on_failure(exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        raise_if_cancelled()
        return
