"""Calls that concurrent callers share: one runs, everyone waiting gets its
answer.

A burst of identical requests (a load balancer's probes, many requests with
one new Keystone token, every post of a queue whose cached metadata just
expired) would otherwise make the same round trip once per request. Only
callers that arrive while a call is running share it, so no answer is older
than the call itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SharedCalls(Generic[K, T]):
    """At most one running call per key."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``'s answer, from the call already running for ``key``
        if there is one."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        # shield: one caller going away must not cancel the others' answer.
        return await asyncio.shield(running)

    def forget(self, key: K) -> None:
        """Callers from now on start a call of their own (the running one
        may have read what a change replaced); those waiting keep theirs."""
        self._running.pop(key, None)

    def forget_all(self) -> None:
        self._running.clear()

    def _finished(self, key: K, done: asyncio.Future[T]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            # Marks a failure as seen even when every caller went away, so
            # asyncio does not log it as never retrieved.
            done.exception()
