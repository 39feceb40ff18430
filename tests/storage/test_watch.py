"""Queue watches: a post wakes those watching its queue, and nobody else."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.storage.helpers import post

# Generous bounds for "promptly": backends that signal over the network
# (pub/sub, LISTEN/NOTIFY) take milliseconds, never seconds.
PROMPT = 2.0
SHORT = 0.05


async def started(coro):
    """Start ``coro`` as a task and give it a moment to begin waiting."""
    task = asyncio.ensure_future(coro)
    for _ in range(5):
        await asyncio.sleep(0)
    return task


async def test_a_post_wakes_a_waiting_watch(driver, project):
    async with driver.watch(project, "q") as watch:
        waiter = await started(watch.wait(30))
        assert not waiter.done()
        began = time.monotonic()
        await post(driver, project, "q")
        assert await asyncio.wait_for(waiter, PROMPT) is True
        assert time.monotonic() - began < PROMPT


async def test_a_post_before_the_wait_returns_at_once(driver, project):
    async with driver.watch(project, "q") as watch:
        await post(driver, project, "q")
        began = time.monotonic()
        assert await watch.wait(30) is True
        assert time.monotonic() - began < PROMPT


async def test_wait_times_out_without_a_post(driver, project):
    async with driver.watch(project, "q") as watch:
        began = time.monotonic()
        assert await watch.wait(SHORT) is False
        elapsed = time.monotonic() - began
    assert SHORT * 0.5 <= elapsed < PROMPT


async def test_a_post_elsewhere_does_not_wake(driver, project):
    other = project + "-other"
    async with driver.watch(project, "q") as watch:
        await post(driver, project, "r")
        await post(driver, project, "q-suffix")
        await post(driver, other, "q")
        assert await watch.wait(SHORT) is False


async def test_a_post_before_the_watch_began_does_not_count(driver, project):
    await post(driver, project, "q")
    async with driver.watch(project, "q") as watch:
        assert await watch.wait(SHORT) is False


async def test_every_watch_of_the_queue_wakes(driver, project):
    async with driver.watch(project, "q") as first, driver.watch(project, "q") as second, \
            driver.watch(project, "r") as elsewhere:
        waiters = [await started(w.wait(30)) for w in (first, second)]
        idle = await started(elsewhere.wait(SHORT))
        await post(driver, project, "q", 3)
        assert await asyncio.wait_for(asyncio.gather(*waiters), PROMPT) == [True, True]
        assert await idle is False


async def test_watches_of_two_queues_wake_separately(driver, project):
    async with driver.watch(project, "a") as a, driver.watch(project, "b") as b:
        await post(driver, project, "b")
        assert await b.wait(30) is True
        assert await a.wait(SHORT) is False
        await post(driver, project, "a")
        assert await a.wait(30) is True


async def test_a_watch_ends_cleanly_and_a_new_one_works(driver, project):
    with pytest.raises(RuntimeError):
        async with driver.watch(project, "q"):
            raise RuntimeError("the caller failed")
    async with driver.watch(project, "q") as watch:
        assert await watch.wait(SHORT) is False
    # Posting with no watch left is fine, and a later watch still works.
    await post(driver, project, "q")
    async with driver.watch(project, "q") as watch:
        waiter = await started(watch.wait(30))
        await post(driver, project, "q")
        assert await asyncio.wait_for(waiter, PROMPT) is True


async def test_many_watches_come_and_go(driver, project):
    for i in range(50):
        async with driver.watch(project, f"q{i % 5}") as watch:
            assert await watch.wait(0) is False
    async with driver.watch(project, "q0") as watch:
        await post(driver, project, "q0")
        assert await watch.wait(30) is True


# --- SQLite: the in-process registry --------------------------------------------


async def test_sqlite_watch_forgets_its_queue_on_exit(tmp_path, clock, project):
    from tests.storage.conftest import sqlite_driver

    async with sqlite_driver(tmp_path, clock) as driver:
        async with driver.watch(project, "q"):
            async with driver.watch(project, "q"):
                assert len(driver._watches[(project, "q")]) == 2
            assert len(driver._watches[(project, "q")]) == 1
        with pytest.raises(ValueError):
            async with driver.watch(project, "r"):
                raise ValueError
        waiter = None
        async with driver.watch(project, "s") as watch:
            waiter = await started(watch.wait(30))
        waiter.cancel()
        assert driver._watches == {}
