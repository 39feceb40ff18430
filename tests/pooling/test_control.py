"""The control store's conformance suite: every test runs against every
control driver (SQLite, Redis, PostgreSQL), each on fresh storage of a real
server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support.postgres_server import shared_server
from tests.support.redis_server import session_redis, unique_prefix
from tidings.storage.pooling.control import (
    CLOSING,
    MOVING,
    STABLE,
    ControlDriver,
    FlavorRecord,
    Placement,
    PoolRecord,
    control_from_url,
)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/control.db"


def redis_url(tmp_path: Path) -> str:
    return f"{session_redis().url}?prefix={unique_prefix()}"


def postgres_url(tmp_path: Path) -> str:
    server = shared_server()
    database = f"control_{uuid.uuid4().hex[:10]}"
    server.psql(f"CREATE DATABASE {database}")
    return server.url(database)


CONTROL_URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": sqlite_url,
    "redis": redis_url,
    "postgres": postgres_url,
}


@pytest.fixture(params=sorted(CONTROL_URLS))
async def control(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[ControlDriver]:
    driver = control_from_url(CONTROL_URLS[request.param](tmp_path))
    await driver.open()
    try:
        yield driver
    finally:
        await driver.close()


def pool(name: str, **fields: object) -> PoolRecord:
    return PoolRecord(name=name, uri=f"sqlite:///{name}.db", weight=100, **fields)  # type: ignore[arg-type]


async def test_pools_round_trip_and_page_in_name_order(control: ControlDriver) -> None:
    assert await control.pool_get("a") is None
    assert await control.pool_upsert(pool("b", flavor="gold", options={"sync": "normal"}))
    assert await control.pool_upsert(pool("a"))
    assert await control.pool_upsert(pool("c"))
    assert await control.pool_get("b") == PoolRecord(
        name="b", uri="sqlite:///b.db", weight=100, flavor="gold", options={"sync": "normal"})
    assert [p.name for p in await control.pool_list()] == ["a", "b", "c"]
    assert [p.name for p in await control.pool_list(marker="a", limit=1)] == ["b"]
    assert [p.name for p in await control.pool_list(marker="b")] == ["c"]
    # A replace is not new and changes every field but the draining mark.
    await control.pool_set_draining("b", True)
    assert not await control.pool_upsert(PoolRecord(name="b", uri="redis://x", weight=5))
    assert await control.pool_get("b") == PoolRecord(name="b", uri="redis://x", weight=5,
                                                     draining=True)
    assert [p.draining for p in await control.pool_list()] == [False, True, False]
    await control.pool_set_draining("b", False)
    assert (await control.pool_get("b")).draining is False  # type: ignore[union-attr]
    await control.pool_delete("b")
    await control.pool_delete("b")  # idempotent
    assert [p.name for p in await control.pool_list()] == ["a", "c"]


async def test_flavors_round_trip(control: ControlDriver) -> None:
    assert await control.flavor_upsert(FlavorRecord("gold", {"durable": True}))
    assert not await control.flavor_upsert(FlavorRecord("gold", {"durable": False}))
    assert await control.flavor_upsert(FlavorRecord("bronze"))
    assert await control.flavor_get("gold") == FlavorRecord("gold", {"durable": False})
    assert [f.name for f in await control.flavor_list()] == ["bronze", "gold"]
    assert [f.name for f in await control.flavor_list(marker="bronze", limit=5)] == ["gold"]
    await control.flavor_delete("gold")
    assert await control.flavor_get("gold") is None


async def test_place_keeps_the_first_placement(control: ControlDriver) -> None:
    await control.pool_upsert(pool("a"))
    await control.pool_upsert(pool("b"))
    assert await control.lookup("p", "q") is None
    assert await control.place("p", "q", "a") == Placement("a")
    assert await control.place("p", "q", "b") == Placement("a")
    assert await control.lookup("p", "q") == Placement("a")
    # Names that look like separators stay apart.
    assert await control.place("p:q", "r", "b") == Placement("b")
    assert await control.place("p", "q:r", "b") == Placement("b")
    assert await control.queues_on("a") == [("p", "q")]
    assert await control.queues_on("b") == [("p", "q:r"), ("p:q", "r")]
    assert await control.queues_on("b", limit=1) == [("p", "q:r")]
    await control.forget("p", "q")
    assert await control.lookup("p", "q") is None
    assert await control.queues_on("a") == []


async def test_no_queue_is_placed_on_a_draining_pool(control: ControlDriver) -> None:
    await control.pool_upsert(pool("a"))
    await control.place("p", "old", "a")
    await control.pool_set_draining("a", True)
    assert await control.place("p", "new", "a") is None
    assert await control.lookup("p", "new") is None
    # A queue placed before the mark is still answered.
    assert await control.place("p", "old", "a") == Placement("a")


async def test_concurrent_placements_agree(control: ControlDriver) -> None:
    for name in "abcd":
        await control.pool_upsert(pool(name))
    results = await asyncio.gather(*(control.place("p", "race", name) for name in "abcd"))
    assert None not in results and len({r.pool for r in results if r}) == 1
    placed = [await control.queues_on(name) for name in "abcd"]
    assert sorted(map(len, placed)) == [0, 0, 0, 1]


async def test_a_move_walks_its_states_by_compare_and_set(control: ControlDriver) -> None:
    await control.pool_upsert(pool("a"))
    await control.pool_upsert(pool("b"))
    await control.place("p", "q", "a")
    # Wrong pool or wrong expected state: no change.
    assert not await control.set_state("p", "q", pool="b", expect=STABLE, state=CLOSING,
                                       target="a")
    assert not await control.set_state("p", "q", pool="a", expect=MOVING, state=CLOSING,
                                       target="b")
    assert not await control.set_state("p", "none", pool="a", expect=STABLE, state=CLOSING,
                                       target="b")
    assert await control.set_state("p", "q", pool="a", expect=STABLE, state=CLOSING,
                                   target="b")
    assert await control.lookup("p", "q") == Placement("a", CLOSING, "b")
    # Only a MOVING queue can be flipped.
    assert not await control.finish_move("p", "q", source="a", target="b")
    assert await control.set_state("p", "q", pool="a", expect=CLOSING, state=MOVING,
                                   target="b")
    assert not await control.finish_move("p", "q", source="a", target="c")
    assert await control.finish_move("p", "q", source="a", target="b")
    assert not await control.finish_move("p", "q", source="a", target="b")
    assert await control.lookup("p", "q") == Placement("b", STABLE, None, "a")
    # The copy left on "a" keeps the pool in use until it is cleared.
    assert await control.queues_on("a") == [("p", "q")]
    assert await control.queues_on("b") == [("p", "q")]
    await control.clear_source("p", "q", "b")  # not its source: no change
    assert await control.lookup("p", "q") == Placement("b", STABLE, None, "a")
    await control.clear_source("p", "q", "a")
    assert await control.lookup("p", "q") == Placement("b")
    assert await control.queues_on("a") == []
    assert await control.queues_on("b") == [("p", "q")]


async def test_a_cancelled_move_goes_back_to_stable(control: ControlDriver) -> None:
    await control.pool_upsert(pool("a"))
    await control.place("p", "q", "a")
    assert await control.set_state("p", "q", pool="a", expect=STABLE, state=CLOSING,
                                   target="b")
    assert await control.set_state("p", "q", pool="a", expect=CLOSING, state=STABLE,
                                   target=None)
    assert await control.lookup("p", "q") == Placement("a")


async def test_forgetting_a_moved_queue_clears_both_pools(control: ControlDriver) -> None:
    await control.place("p", "q", "a")
    await control.set_state("p", "q", pool="a", expect=STABLE, state=MOVING, target="b")
    await control.finish_move("p", "q", source="a", target="b")
    await control.forget("p", "q")
    assert await control.queues_on("a") == [] and await control.queues_on("b") == []
