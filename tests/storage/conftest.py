"""The conformance suite's fixtures: every test runs against every driver.

A driver joins the suite by adding a factory to DRIVER_FACTORIES; each
factory yields an open driver on fresh storage driven by the fake clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.clock import FakeClock
from tests.support.postgres_server import postgres_driver
from tests.support.redis_server import redis_cluster_driver, redis_driver
from tidings.storage.base import DataDriver
from tidings.storage.registry import driver_from_url


@asynccontextmanager
async def sqlite_driver(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DataDriver]:
    driver = driver_from_url(f"sqlite:///{tmp_path}/conformance.db", sync="normal", clock=clock)
    await driver.open()
    try:
        yield driver
    finally:
        await driver.close()


@asynccontextmanager
async def pooled_driver(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DataDriver]:
    """The pooled driver over two SQLite pools (tests/pooling has the rest)."""
    from tests.pooling.support import pooled_over

    urls = {name: f"sqlite:///{tmp_path}/{name}.db?sync=normal" for name in ("pool-a", "pool-b")}
    async with pooled_over(tmp_path, clock, urls) as driver:
        yield driver


DRIVER_FACTORIES: dict[str, Callable[[Path, FakeClock], Any]] = {
    "sqlite": sqlite_driver,
    "pooled": pooled_driver,
    "postgres": postgres_driver,
    "redis": redis_driver,
    "redis-cluster": redis_cluster_driver,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(DRIVER_FACTORIES))
async def driver(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                 ) -> AsyncIterator[DataDriver]:
    async with DRIVER_FACTORIES[request.param](tmp_path, clock) as opened:
        yield opened


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"
