"""A single Redis server's scripts issued in one event-loop tick go out as
one pipeline on one connection (storage/redis/batch.py), each request
still getting its own reply, its own error and the driver's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.storage.helpers import claim, list_ids, post
from tests.support.redis_server import RedisServer, unique_prefix
from tidings import errors
from tidings.storage.redis.driver import RedisDriver
from tidings.storage.registry import driver_from_url


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own: its connection counts are the
    driver's alone."""
    redis = RedisServer().start()
    yield redis
    redis.cleanup()


@pytest.fixture
async def driver(server, clock) -> AsyncIterator[RedisDriver]:
    opened = driver_from_url(f"{server.url}?prefix={unique_prefix()}&socket_timeout=1",
                             clock=clock)
    assert isinstance(opened, RedisDriver)
    await opened.open()
    yield opened
    await opened.close()


async def _connections_made(server: RedisServer) -> int:
    """How many connections the server has accepted (this one included)."""
    direct = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        return int((await direct.info("stats"))["total_connections_received"])
    finally:
        await direct.aclose()


async def test_concurrent_scripts_share_one_connection_each_with_its_reply(
        driver, server, project):
    queues = [f"q{i}" for i in range(4)]
    first = {q: await post(driver, project, q) for q in queues}  # the queues exist
    # Forgotten scripts: the batch's EVALSHAs all answer NOSCRIPT, then
    # their sources run, once each.
    await driver.client.script_flush()
    before = await _connections_made(server)

    posted = await asyncio.gather(*(post(driver, project, q, 2) for q in queues * 10))

    # One pipeline on the connection already in the pool: 40 requests
    # unbatched would have needed 40 connections at once.
    assert await _connections_made(server) == before + 1  # the counting one
    for q in queues:
        mine = [ids for queue, ids in zip(queues * 10, posted) if queue == q]
        assert await list_ids(driver, project, q, limit=100) == first[q] + sum(mine, [])
    assert len({i for ids in posted for i in ids}) == 80


async def test_a_reply_in_a_batch_is_its_own_requests_outcome(driver, project):
    """A claim on an empty queue, posts and a refused delete in one batch:
    each request sees its own result or error."""
    await post(driver, project, "full", 3)
    await post(driver, project, "empty")
    claim_id, claimed = await claim(driver, project, "empty")
    results = await asyncio.gather(
        claim(driver, project, "empty"),
        post(driver, project, "full"),
        driver.messages.delete(project, "empty", claimed[0].id, None),
        claim(driver, project, "full", limit=10),
        return_exceptions=True,
    )
    assert results[0] == (None, [])
    assert isinstance(results[1], list) and len(results[1]) == 1
    assert isinstance(results[2], errors.MessageIsClaimed)
    assert claim_id is not None and len(results[3][1]) == 4


async def test_a_failed_batch_answers_each_request_503(driver, server, project):
    await post(driver, project, "q")
    server.stop()
    results = await asyncio.gather(*(post(driver, project, "q") for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, errors.ServiceUnavailable) for r in results), results
    server.start()
    # The pool's dead connection is replaced: the next batch is stored.
    again = await asyncio.gather(*(post(driver, project, "q") for _ in range(3)))
    assert len(await list_ids(driver, project, "q")) == 4 and all(again)


async def test_a_batch_cut_by_the_deadline_leaves_no_reply_for_the_next(
        driver, server, project):
    """A hung server: the batch is cut at the deadline (socket_timeout=1)
    with its replies unread. Its connection must not serve the next batch,
    which would read the old replies as its own."""
    await post(driver, project, "q")
    server.pause()
    try:
        results = await asyncio.gather(*(driver.queues.stats(project, "q") for _ in range(5)),
                                       return_exceptions=True)
    finally:
        server.resume()
    assert all(isinstance(r, errors.ServiceUnavailable) for r in results), results
    # Each request now gets its own reply: posts to distinct queues return
    # ids that list back from the queue each was posted to.
    queues = [f"after{i}" for i in range(6)]
    posted = await asyncio.gather(*(post(driver, project, q) for q in queues))
    for queue, ids in zip(queues, posted):
        assert await list_ids(driver, project, queue) == ids
