"""Generated keys kept with the data (DataDriver.stored_secret): what signs
pre-signed URLs when no ``auth.secret_key`` is configured, the same for
every worker and node of a deployment."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from tests.support.clock import FakeClock
from tidings.storage.base import DataDriver
from tidings.storage.registry import driver_from_url

HEX = frozenset(b"0123456789abcdef")


async def test_a_secret_is_made_once_and_kept(driver: DataDriver) -> None:
    first = await driver.stored_secret("signed-urls")
    assert len(first) == 64 and set(first) <= HEX
    assert await driver.stored_secret("signed-urls") == first
    other = await driver.stored_secret("other-key")
    assert other != first and len(other) == 64


async def test_callers_racing_to_make_it_all_get_the_one_that_won(driver: DataDriver) -> None:
    keys = await asyncio.gather(*(driver.stored_secret("raced") for _ in range(8)))
    assert len(set(keys)) == 1


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a b", "é", "x" * 65])
async def test_names_are_letters_digits_and_dashes(driver: DataDriver, name: str) -> None:
    with pytest.raises(ValueError):
        await driver.stored_secret(name)


# --- SQLite: a file beside the database --------------------------------------


async def test_sqlite_keeps_it_in_a_private_file_every_process_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/data.db?sync=normal"
    first, second = driver_from_url(url, clock=FakeClock()), driver_from_url(url,
                                                                          clock=FakeClock())
    await first.open()
    await second.open()
    try:
        keys = await asyncio.gather(first.stored_secret("signed-urls"),
                                    second.stored_secret("signed-urls"))
    finally:
        await first.close()
        await second.close()
    key_file = tmp_path / "data.db.signed-urls.key"
    assert keys[0] == keys[1] == key_file.read_text().strip().encode()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Nothing else was left beside it (the candidates are removed).
    assert sorted(p.name for p in tmp_path.iterdir() if "key" in p.name) == [key_file.name]
