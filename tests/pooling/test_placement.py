"""How a server process follows the catalogue: cached stable placements (no
control store call on a hit, never older than cache_seconds), no claims on
a CLOSING queue, requests held while a queue is MOVING, no new queue on a
draining pool."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.clock import FakeClock
from tidings import errors
from tidings.storage.base import ClaimResult, DeadLetterPolicy, NewMessage
from tidings.storage.pooling.control import (
    CLOSING,
    MOVING,
    STABLE,
    Placement,
    PoolRecord,
    SqliteControlDriver,
)
from tidings.storage.pooling.drain import copy_queue
from tidings.storage.pooling.driver import PooledDriver, QueueMoving

CLIENT = "11111111-1111-4111-8111-111111111111"
TTL = 2.0


class CountingControl(SqliteControlDriver):
    """The real SQLite control store, counting catalogue reads."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.lookups = 0
        self.looked_up = asyncio.Condition()

    async def lookup(self, project: str, queue: str) -> Placement | None:
        found = await super().lookup(project, queue)
        async with self.looked_up:
            self.lookups += 1
            self.looked_up.notify_all()
        return found

    async def wait_for_lookups(self, count: int) -> None:
        async with self.looked_up:
            await asyncio.wait_for(self.looked_up.wait_for(lambda: self.lookups >= count), 10)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def open_process(tmp_path: Path, monotonic: Monotonic, *, move_wait: float = 30.0
                       ) -> PooledDriver:
    """One server process's pooled driver over the shared control file."""
    control = CountingControl(str(tmp_path / "control.db"))
    driver = PooledDriver(control, sync="normal", clock=FakeClock(), rng=random.Random(3),
                          cache_seconds=TTL, move_wait=move_wait, monotonic=monotonic)
    await driver.open()
    return driver


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[tuple[PooledDriver, PooledDriver, Monotonic]]:
    monotonic = Monotonic()
    first = await open_process(tmp_path, monotonic)
    second = await open_process(tmp_path, monotonic)
    for name in ("a", "b"):
        await first.control.pool_upsert(PoolRecord(
            name=name, uri=f"sqlite:///{tmp_path}/{name}.db?sync=normal", weight=100))
    try:
        yield first, second, monotonic
    finally:
        await first.close()
        await second.close()


async def post(driver: PooledDriver, queue: str, body: object) -> None:
    await driver.messages.post("p", queue, [NewMessage(body=body, ttl=600)], CLIENT)


async def bodies(driver: PooledDriver, pool: str, queue: str) -> list[object]:
    inner = await driver.driver_for(pool)
    page, _ = await inner.messages.list("p", queue, marker=None, limit=20, client_id=None,
                                        echo=True, include_claimed=True, include_delayed=True)
    return [m.body for m in page]


async def test_a_cache_hit_does_not_read_the_catalogue(processes: tuple) -> None:
    first, _, monotonic = processes
    control: CountingControl = first.control  # type: ignore[assignment]
    await post(first, "q", 0)
    before = control.lookups
    for i in range(50):
        await post(first, "q", i)
        await first.queues.stats("p", "q")
    assert control.lookups == before
    monotonic.now += TTL
    await first.queues.stats("p", "q")
    assert control.lookups == before + 1


async def test_a_stale_placement_lives_at_most_the_cache_ttl(processes: tuple) -> None:
    first, second, monotonic = processes
    await post(first, "q", 1)
    source = await first.lookup("p", "q")
    target = "b" if source == "a" else "a"
    assert await second.lookup("p", "q") == source  # cached by the other process
    control = first.control
    assert await control.set_state("p", "q", pool=source, expect=STABLE, state=MOVING,
                                   target=target)
    await copy_queue(await first.driver_for(source), await first.driver_for(target), "p", "q")
    assert await control.finish_move("p", "q", source=source, target=target)
    monotonic.now += TTL - 0.01
    assert await second.lookup("p", "q") == source
    monotonic.now += 0.01
    assert await second.lookup("p", "q") == target
    assert await bodies(second, target, "q") == [1]


async def test_a_closing_queue_grants_no_claims(processes: tuple) -> None:
    first, _, _ = processes
    await post(first, "q", 1)
    pool = await first.lookup("p", "q")
    assert await first.control.set_state("p", "q", pool=pool, expect=STABLE, state=CLOSING,
                                         target="x")
    first.forget_cached("p", "q")
    assert await first.claims.create("p", "q", ttl=60, grace=60, limit=5,
                                     dead_letter=None) == ClaimResult(None)
    await post(first, "q", 2)  # everything else is served by the pool
    assert await bodies(first, pool, "q") == [1, 2]
    assert await first.control.set_state("p", "q", pool=pool, expect=CLOSING, state=STABLE,
                                         target=None)
    result = await first.claims.create("p", "q", ttl=60, grace=60, limit=5,
                                       dead_letter=None)
    claim_id, claimed = result.claim_id, result.messages
    assert claim_id and [m.body for m in claimed] == [1, 2]


async def test_a_dead_letter_queue_on_another_pool_counts_each_move_once(processes: tuple
                                                                         ) -> None:
    first, _, _ = processes
    assert await first.place_name("p", "q", near="a") == "a"
    assert await first.place_name("p", "dlq", near="b") == "b"
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", ttl=None)
    for body in ("poison-1", "poison-2"):
        await post(first, "q", body)
    taken = await first.claims.create("p", "q", ttl=60, grace=0, limit=5, dead_letter=policy)
    assert taken.claim_id is not None and taken.dead_lettered == 0
    await first.claims.delete("p", "q", taken.claim_id)

    result = await first.claims.create("p", "q", ttl=60, grace=0, limit=5, dead_letter=policy)
    # Moved to pool a's local "dlq", then forwarded to pool b: one move each.
    assert result == ClaimResult(None, [], 2)
    assert await bodies(first, "b", "dlq") == ["poison-1", "poison-2"]
    assert await bodies(first, "a", "dlq") == []


async def test_a_post_to_a_moving_queue_waits_for_the_flip(processes: tuple) -> None:
    first, second, _ = processes
    await post(first, "q", 1)
    source = await first.lookup("p", "q")
    target = "b" if source == "a" else "a"
    assert await first.control.set_state("p", "q", pool=source, expect=STABLE, state=MOVING,
                                         target=target)
    control: CountingControl = second.control  # type: ignore[assignment]
    before = control.lookups
    held = asyncio.create_task(post(second, "q", 2))
    await control.wait_for_lookups(before + 3)  # it keeps reading the entry
    assert not held.done()
    await copy_queue(await first.driver_for(source), await first.driver_for(target), "p", "q")
    assert await first.control.finish_move("p", "q", source=source, target=target)
    await asyncio.wait_for(held, 10)
    assert await bodies(second, target, "q") == [1, 2]
    assert await bodies(second, source, "q") == [1]  # the copy the drain deletes next


async def test_a_queue_moving_longer_than_move_wait_answers_503(tmp_path: Path) -> None:
    driver = await open_process(tmp_path, Monotonic(), move_wait=0)
    try:
        await driver.control.pool_upsert(PoolRecord(
            name="a", uri=f"sqlite:///{tmp_path}/a.db?sync=normal", weight=1))
        await post(driver, "q", 1)
        await driver.control.set_state("p", "q", pool="a", expect=STABLE, state=MOVING,
                                       target="b")
        driver.forget_cached("p", "q")
        with pytest.raises(QueueMoving):
            await post(driver, "q", 2)
        # The transports answer ServiceUnavailable with 503.
        assert issubclass(QueueMoving, errors.ServiceUnavailable)
    finally:
        await driver.close()


async def test_no_new_queue_lands_on_a_draining_pool(processes: tuple) -> None:
    first, second, _ = processes
    await second.pools()  # cached before the mark: still lists "a" as open
    await first.control.pool_set_draining("a", True)
    for i in range(20):
        await post(second, f"n{i}", i)
    assert {await second.lookup("p", f"n{i}") for i in range(20)} == {"b"}
