"""Per-project quotas and request rate limits (settings ``quotas``).

The operations call the quota checks before they write, so a refused
request writes nothing; the transports call ``Quotas.take`` once per
request (HTTP) or action (WebSocket). Quotas are checked, then written:
two racing requests may both pass the last free slot, so a quota can be
overshot by the requests in flight at once (it is a guard against abuse,
not an exact count).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tidings import errors
from tidings.config import QuotaSettings

if TYPE_CHECKING:
    from tidings.api.context import Context

# Buckets of projects idle this long are forgotten (they would be full).
_IDLE_FORGET = 300.0
_SWEEP_EVERY = 4096


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; one per request."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.stamp = now


class Quotas:
    """The quota settings and the rate limiter of one server process."""

    def __init__(self, settings: QuotaSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or QuotaSettings()
        self.clock = clock
        self.rate = float(self.settings.requests_per_second_per_project)
        self.burst = float(self.settings.burst or max(1, math.ceil(self.rate)))
        self._buckets: dict[str, TokenBucket] = {}
        self._takes = 0

    @property
    def rate_limited(self) -> bool:
        return self.rate > 0

    def take(self, project: str) -> None:
        """Count one request of ``project``; raise RateLimited when its
        bucket is empty."""
        if self.rate <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(project)
        if bucket is None:
            bucket = self._buckets[project] = TokenBucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
        else:
            wait = (1 - bucket.tokens) / self.rate
            raise errors.RateLimited(
                f"Project request rate limit exceeded: at most "
                f"{self.settings.requests_per_second_per_project:g} requests a second. "
                f"Retry in {wait:.2f} s.",
                retry_after=wait,
            )
        self._takes += 1
        if self._takes % _SWEEP_EVERY == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        idle = [p for p, b in self._buckets.items() if now - b.stamp > _IDLE_FORGET]
        for project in idle:
            del self._buckets[project]


def _settings(ctx: Context) -> QuotaSettings | None:
    quotas = ctx.service.quotas
    return quotas.settings if quotas is not None else None


async def _queue_exists(ctx: Context, name: str) -> bool:
    try:
        await ctx.storage.queues.get_metadata(ctx.project, name)
    except errors.QueueDoesNotExist:
        return False
    return True


async def _check_queue_count(ctx: Context, name: str, maximum: int) -> None:
    if await _queue_exists(ctx, name):
        return
    count = await ctx.storage.queues.count(ctx.project)
    if count >= maximum:
        raise errors.QuotaExceeded(
            f"The project has {count} queues, the most it may have "
            f"(quotas.max_queues_per_project = {maximum}): queue {name!r} was not created."
        )


async def check_new_queue(ctx: Context, name: str) -> None:
    """Before creating queue ``name``: refuse when the project already has
    its maximum of queues (an existing queue always passes)."""
    settings = _settings(ctx)
    if settings is None or settings.max_queues_per_project <= 0:
        return
    await _check_queue_count(ctx, name, settings.max_queues_per_project)


async def check_post(ctx: Context, queue: str, count: int) -> None:
    """Before posting ``count`` messages to ``queue`` (which the post
    creates if needed): the queue quota, then the message quota."""
    settings = _settings(ctx)
    if settings is None:
        return
    if settings.max_queues_per_project > 0:
        await _check_queue_count(ctx, queue, settings.max_queues_per_project)
    maximum = settings.max_messages_per_queue
    if maximum > 0:
        stats = await ctx.storage.queues.stats(ctx.project, queue)
        if stats.total + count > maximum:
            raise errors.QuotaExceeded(
                f"Queue {queue!r} holds {stats.total} messages; {count} more would pass its "
                f"quota of {maximum} (quotas.max_messages_per_queue): nothing was posted."
            )
