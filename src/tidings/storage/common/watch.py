"""The long-poll wait every driver's queue watch shares.

A watch (``base.PostWatch``) is an event a driver sets when a message is
posted to the queue watched; how it hears the post is the backend's (a
local bus, LISTEN/NOTIFY, pub/sub), how a request waits on it is this.
"""

from __future__ import annotations

import asyncio


class EventWatch:
    """A watch whose ``event`` the driver sets on a post to its queue."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True once a post was heard since the watch began (at once if one
        already was), False after ``timeout`` seconds without one.

        A post heard just as the time runs out counts: the event is read
        again after the timeout, so it is never lost to the race.
        """
        if self.event.is_set():
            return True
        if timeout <= 0:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self.event.wait()
        except TimeoutError:
            return self.event.is_set()
        return True
