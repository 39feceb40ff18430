"""Building pooled drivers for the tests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tidings.storage.pooling.control import PoolRecord, SqliteControlDriver
from tidings.storage.pooling.driver import PooledDriver


@asynccontextmanager
async def pooled_over(tmp_path: Path, clock: Any, urls: dict[str, str],
                      weights: dict[str, int] | None = None, seed: int | None = 7
                      ) -> AsyncIterator[PooledDriver]:
    control = SqliteControlDriver(str(tmp_path / "control.db"))
    driver = PooledDriver(control, sync="normal", clock=clock, rng=random.Random(seed))
    await driver.open()
    try:
        for name, url in urls.items():
            weight = (weights or {}).get(name, 100)
            await control.pool_upsert(PoolRecord(name=name, uri=url, weight=weight))
        driver.invalidate()
        yield driver
    finally:
        await driver.close()
