"""migrate() and schema_status(): what `tidings migrate` and `tidings check`
ask of every driver."""

from __future__ import annotations

from pathlib import Path

from tidings.storage.base import DataDriver, SchemaStatus
from tidings.storage.registry import driver_from_url


async def test_an_open_driver_reports_a_current_schema(driver: DataDriver) -> None:
    assert (await driver.schema_status()).problem is None


async def test_migrating_a_current_schema_changes_nothing(driver: DataDriver) -> None:
    before = await driver.schema_status()
    found = await driver.migrate()
    # A driver keeping no schema (Redis, the pooled driver) finds version 0.
    assert found == (before.found or 0)
    assert await driver.schema_status() == before


def test_the_problem_says_what_to_do() -> None:
    assert SchemaStatus(3, 3).problem is None
    assert SchemaStatus(None, None).problem is None
    outdated = SchemaStatus(1, 3).problem
    assert outdated is not None
    assert "version 1" in outdated and "outdated" in outdated and "tidings migrate" in outdated
    assert "newer than this Tidings (3)" in (SchemaStatus(4, 3).problem or "")


async def test_sqlite_status_before_open_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    driver = driver_from_url(f"sqlite:///{path}")
    status = await driver.schema_status()
    assert status.found == 0 and status.problem is not None
    assert not path.exists()


async def test_sqlite_migrates_before_open(tmp_path: Path) -> None:
    driver = driver_from_url(f"sqlite:///{tmp_path}/new/tidings.db")
    assert await driver.migrate() == 0
    status = await driver.schema_status()
    assert status.problem is None and status.found == status.needed
    assert await driver.migrate() == status.found  # the second run finds it done
