"""Shared helpers of the storage conformance suite: interface calls only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Sequence

from tidings.storage.base import ClaimResult, DataDriver, DeadLetterPolicy, Message, NewMessage

CLIENT = "11111111-1111-4111-8111-111111111111"
OTHER_CLIENT = "22222222-2222-4222-8222-222222222222"

# Ids no driver ever issues; each must read as "not found", never raise.
_NUMBERED = object()

GARBAGE_IDS = [
    "",
    "nope",
    "0x1",
    " 1",
    "-1",
    "1_0",
    "ffffffffffffffff",
    "f" * 200,
    "00000000-0000-0000-0000-000000000000",
    "'; DROP TABLE messages; --",
    "\u00e9\u00e8",
]


async def post(
    driver: DataDriver,
    project: str,
    queue: str,
    n: int = 1,
    *,
    ttl: int = 3600,
    delay: int = 0,
    client_id: str = CLIENT,
    body: Any = _NUMBERED,
) -> list[str]:
    """Post ``n`` messages; bodies are {"n": i} unless ``body`` is given."""
    messages = [
        NewMessage(body={"n": i} if body is _NUMBERED else body, ttl=ttl, delay=delay)
        for i in range(n)
    ]
    return await driver.messages.post(project, queue, messages, client_id)


async def list_messages(
    driver: DataDriver,
    project: str,
    queue: str,
    *,
    marker: str | None = None,
    limit: int = 20,
    client_id: str | None = OTHER_CLIENT,
    echo: bool = False,
    include_claimed: bool = False,
    include_delayed: bool = False,
) -> tuple[list[Message], str | None]:
    """One page, read by default as a client other than the poster."""
    return await driver.messages.list(
        project,
        queue,
        marker=marker,
        limit=limit,
        client_id=client_id,
        echo=echo,
        include_claimed=include_claimed,
        include_delayed=include_delayed,
    )


async def list_ids(driver: DataDriver, project: str, queue: str, **kwargs: Any) -> list[str]:
    page, _ = await list_messages(driver, project, queue, **kwargs)
    return [m.id for m in page]


async def all_ids(
    driver: DataDriver, project: str, queue: str, *, limit: int = 20, **kwargs: Any
) -> list[str]:
    """Every id, paging by marker until an empty page."""
    seen: list[str] = []
    marker = None
    for _ in range(10_000):
        page, marker = await list_messages(
            driver, project, queue, marker=marker, limit=limit, **kwargs
        )
        if not page:
            return seen
        seen += [m.id for m in page]
    raise AssertionError("paging never ended")


async def claim(
    driver: DataDriver, project: str, queue: str, **options: Any
) -> tuple[str | None, list[Message]]:
    """The new claim's id (None: nothing claimed) and its messages; the
    options (ttl, grace, limit, dead_letter) are claim_result's."""
    result = await claim_result(driver, project, queue, **options)
    return result.claim_id, result.messages


async def claim_result(
    driver: DataDriver,
    project: str,
    queue: str,
    *,
    ttl: int = 300,
    grace: int = 60,
    limit: int = 10,
    dead_letter: DeadLetterPolicy | None = None,
) -> ClaimResult:
    """The whole answer of a claim, its dead letter count included."""
    return await driver.claims.create(
        project, queue, ttl=ttl, grace=grace, limit=limit, dead_letter=dead_letter
    )


async def claimed_ids(driver: DataDriver, project: str, queue: str, **kwargs: Any) -> list[str]:
    _, messages = await claim(driver, project, queue, **kwargs)
    return [m.id for m in messages]


def ids(messages: Sequence[Message]) -> list[str]:
    return [m.id for m in messages]


# --- notifications ------------------------------------------------------------


async def subscribe(
    driver: DataDriver,
    project: str,
    queue: str,
    subscriber: str = "http://example.com/hook",
    *,
    ttl: int = 3600,
    options: dict[str, Any] | None = None,
    confirmed: bool = True,
) -> str:
    """Create a subscription that must not be a duplicate; its id."""
    from tidings.storage.base import NewSubscription

    subscription_id = await driver.subscriptions.create(
        project,
        queue,
        NewSubscription(
            subscriber=subscriber, ttl=ttl, options=options or {}, confirmed=confirmed
        ),
    )
    assert subscription_id is not None, "unexpected duplicate subscription"
    return subscription_id


async def lease(driver: DataDriver, *, limit: int = 100, lease_seconds: float = 30) -> list[Any]:
    return await driver.deliveries.lease(limit=limit, lease_seconds=lease_seconds)


async def list_deliveries(
    driver: DataDriver,
    project: str,
    queue: str,
    *,
    status: Any = None,
    marker: str | None = None,
    limit: int = 100,
    subscription_id: str | None = None,
) -> list[Any]:
    """A page of deliveries, PENDING ones unless ``status`` is given."""
    from tidings.storage.base import DeliveryStatus

    return await driver.deliveries.list(
        project,
        queue,
        status=DeliveryStatus.PENDING if status is None else status,
        marker=marker,
        limit=limit,
        subscription_id=subscription_id,
    )


def metadata_caches(driver: DataDriver) -> list[Any]:
    """The per-process metadata caches a driver reads through (the pooled
    driver's are those of the pools it has opened), so a test can age them
    by hand."""
    from tidings.storage.pooling.driver import PooledDriver

    if isinstance(driver, PooledDriver):
        return [cache for pool in driver._drivers.values()  # the pools opened so far
                for cache in metadata_caches(pool)]
    cache = getattr(driver.queues, "metadata_cache", None)
    return [] if cache is None else [cache]


@asynccontextmanager
async def second_process(driver: DataDriver) -> AsyncIterator[DataDriver]:
    """Another driver on the same storage, as a second server process
    (``serve --workers 2``, or a second server) opens it."""
    from tidings.storage.pooling.control import SqliteControlDriver
    from tidings.storage.pooling.driver import PooledDriver
    from tidings.storage.redis.driver import RedisDriver
    from tidings.storage.sqlite.driver import SqliteDriver

    other: DataDriver
    if isinstance(driver, SqliteDriver):
        other = SqliteDriver(driver.path, sync=driver.sync, clock=driver.clock)
    elif isinstance(driver, RedisDriver):
        other = RedisDriver(driver.client_url, cluster=driver.cluster, prefix=driver.keys.prefix,
                            unreliable=True, clock=driver.clock)
    elif isinstance(driver, PooledDriver):
        # The same control store: the same pools, opened anew.
        other = PooledDriver(SqliteControlDriver(driver.control.path), sync="normal",
                             clock=driver.clock)
    else:
        # PostgreSQL: another pool of connections to the same database.
        other = type(driver)(driver.dsn, clock=driver.clock)  # type: ignore[call-arg, attr-defined]
    await other.open()
    try:
        yield other
    finally:
        await other.close()
