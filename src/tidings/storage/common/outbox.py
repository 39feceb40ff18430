"""Whether the message post a request just made wrote a delivery.

The pipeline's notifier stage (api/pipeline.py) wakes this process's
delivery worker after each post, and on PostgreSQL each wake costs a lease
statement, a round trip even when the queue has no subscriber (7 % of the
server's CPU posting ten messages a request at 32 connections). A driver
whose post knows whether it wrote to the outbox (each driver's does:
the post writes the outbox in its own transaction or script) says so
here, and the stage wakes the worker only when there is something to
lease. A driver that does not say (a third-party one) leaves it None: the
worker is woken.

A context variable: the driver sets it in the storage call the request
awaits, and the stage reads it after that call in the same task, so
concurrent requests never see each other's.
"""

from __future__ import annotations

from contextvars import ContextVar

POST_WROTE_DELIVERIES: ContextVar[bool | None] = ContextVar(
    "post_wrote_deliveries", default=None)


def take_post_wrote_deliveries() -> bool | None:
    """What the last post of this request said (None: it did not say),
    forgotten once read so that a later post of the task reads afresh."""
    wrote = POST_WROTE_DELIVERIES.get()
    if wrote is not None:
        POST_WROTE_DELIVERIES.set(None)
    return wrote
