"""SQLite driver behaviour beyond the conformance suite: the queue
metadata cache, exact within one driver and bounded across processes."""

from __future__ import annotations

from pathlib import Path

from tests.support.clock import FakeClock
from tidings.storage.registry import driver_from_url
from tidings.storage.sqlite.driver import METADATA_CACHE_SECONDS


async def test_metadata_changes_through_the_driver_are_seen_at_once(tmp_path: Path) -> None:
    driver = driver_from_url(f"sqlite:///{tmp_path}/a.db", sync="normal", clock=FakeClock())
    await driver.open()
    try:
        await driver.queues.create("p", "q", {"_default_message_ttl": 60})
        assert await driver.queues.get_metadata("p", "q") == {"_default_message_ttl": 60}
        await driver.queues.set_metadata("p", "q", {"_default_message_ttl": 90})
        assert await driver.queues.get_metadata("p", "q") == {"_default_message_ttl": 90}
        # A caller changing its copy does not change the cache.
        (await driver.queues.get_metadata("p", "q"))["x"] = 1
        assert await driver.queues.get_metadata("p", "q") == {"_default_message_ttl": 90}
        await driver.queues.delete("p", "q")
        await driver.queues.create("p", "q", {})
        assert await driver.queues.get_metadata("p", "q") == {}
    finally:
        await driver.close()


async def test_another_process_changes_are_seen_within_the_cache_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    reader = driver_from_url(url, sync="normal", clock=FakeClock())
    writer = driver_from_url(url, sync="normal", clock=FakeClock())
    await reader.open()
    await writer.open()
    now = [1000.0]
    reader.queues.monotonic = lambda: now[0]  # type: ignore[attr-defined]
    try:
        await writer.queues.create("p", "q", {"a": 1})
        assert await reader.queues.get_metadata("p", "q") == {"a": 1}
        await writer.queues.set_metadata("p", "q", {"a": 2})
        now[0] += METADATA_CACHE_SECONDS / 2
        assert await reader.queues.get_metadata("p", "q") == {"a": 1}  # still cached
        now[0] += METADATA_CACHE_SECONDS
        assert await reader.queues.get_metadata("p", "q") == {"a": 2}
    finally:
        await reader.close()
        await writer.close()
