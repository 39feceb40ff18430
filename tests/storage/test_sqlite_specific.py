"""SQLite driver behaviour beyond the conformance suite: the queue
metadata cache, exact within one driver and bounded across processes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.support.clock import FakeClock
from tidings import errors
from tidings.storage.base import NewMessage
from tidings.storage.common.metadata_cache import METADATA_CACHE_SECONDS
from tidings.storage.registry import driver_from_url
from tidings.storage.sqlite import schema
from tidings.storage.sqlite.core import ensure_queue


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


async def test_ids_issued_before_opaque_ids_keep_working(tmp_path: Path) -> None:
    """A database written before ids were opaque (schema version 2) keeps
    its plain ids: the message and subscription are found, listed and
    deleted by them, while new rows get opaque ids, and a plain id past
    the old rows names nothing (a made-up counter must not page)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in schema.MIGRATIONS[:2]:
        conn.executescript(script)
    conn.executescript(
        "PRAGMA user_version = 2;"
        "INSERT INTO queues (project, name, metadata, created) VALUES ('p', 'q', '{}', 0);"
        "INSERT INTO messages (queue_id, body, created, expires, available, client_id) "
        "VALUES (1, CAST('{\"old\":1}' AS BLOB), 0, 1e12, 0, 'c'), "
        "(1, CAST('{\"old\":2}' AS BLOB), 0, 1e12, 0, 'c');"
        "DELETE FROM messages WHERE id = 2;"  # the counter remembers it
        "INSERT INTO subscriptions (token, project, queue, subscriber, ttl, created, expires,"
        " options, confirmed) VALUES (3054, 'p', 'q', 'mailto:a@example.org', 60, 0, 1e12,"
        " '{}', 1);"
    )
    conn.close()
    driver = driver_from_url(f"sqlite:///{path}", clock=FakeClock(start=1000.0))
    await driver.open()
    try:
        old = "0000000000000001"
        assert (await driver.messages.get("p", "q", old)).body == {"old": 1}
        [new] = await driver.messages.post("p", "q", [NewMessage(body="new", ttl=60)], "c")
        assert len(new) == 32 and new != "0000000000000003"
        page, _ = await driver.messages.list("p", "q", marker=None, limit=10, client_id=None,
                                             echo=True, include_claimed=False,
                                             include_delayed=False)
        assert [m.id for m in page] == [old, new]
        page, _ = await driver.messages.list("p", "q", marker=old, limit=10, client_id=None,
                                             echo=True, include_claimed=False,
                                             include_delayed=False)
        assert [m.id for m in page] == [new]
        with pytest.raises(errors.MessageDoesNotExist):
            await driver.messages.get("p", "q", "0000000000000003")
        subscription = await driver.subscriptions.get("p", "q", "0000000000000001" "00000bee")
        assert subscription.subscriber == "mailto:a@example.org"
        await driver.messages.delete("p", "q", old, None)
        with pytest.raises(errors.MessageDoesNotExist):
            await driver.messages.get("p", "q", old)
    finally:
        await driver.close()


async def test_claims_sharing_a_transaction_take_the_next_messages_and_see_releases(
        tmp_path: Path) -> None:
    """Claims queued together run in one transaction, each starting after
    the rows the one before took; a release in between is claimable again."""
    driver = driver_from_url(f"sqlite:///{tmp_path}/a.db", sync="normal", clock=FakeClock())
    await driver.open()
    try:
        ids = await driver.messages.post(
            "p", "q", [NewMessage(body=i, ttl=300, delay=0) for i in range(6)], "c")
        first, second = await asyncio.gather(*(
            driver.claims.create("p", "q", ttl=60, grace=60, limit=2, dead_letter=None)
            for _ in range(2)))
        assert [m.id for m in first.messages] == ids[0:2]
        assert [m.id for m in second.messages] == ids[2:4]
        assert first.claim_id is not None
        third, _, fourth = await asyncio.gather(
            driver.claims.create("p", "q", ttl=60, grace=60, limit=2, dead_letter=None),
            driver.claims.delete("p", "q", first.claim_id),
            driver.claims.create("p", "q", ttl=60, grace=60, limit=2, dead_letter=None))
        assert [m.id for m in third.messages] == ids[4:6]
        assert [m.id for m in fourth.messages] == ids[0:2]
    finally:
        await driver.close()


async def test_writes_sharing_a_transaction_find_their_queue_once_and_survive_an_undone_one(
        tmp_path: Path) -> None:
    """The jobs of one transaction note the queue ids they found. A job
    that created the queue and then failed is undone: the posts after it
    in the same transaction create the queue again instead of writing into
    the undone row."""
    driver = driver_from_url(f"sqlite:///{tmp_path}/a.db", sync="normal", clock=FakeClock())
    await driver.open()
    lookups: list[str] = []
    try:
        def create_then_fail(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(lookups.append)
            ensure_queue(conn, "p", "q", 1.0, driver.writer.notes)
            raise errors.Conflict("no")

        failed, first, second = await asyncio.gather(
            driver.writer.run(create_then_fail),
            driver.messages.post("p", "q", [NewMessage(body=1, ttl=300)], "c"),
            driver.messages.post("p", "q", [NewMessage(body=2, ttl=300)], "c"),
            return_exceptions=True)
        assert isinstance(failed, errors.Conflict)
        listed, _ = await driver.messages.list(
            "p", "q", marker=None, limit=10, client_id=None, echo=True, include_claimed=True,
            include_delayed=True)
        assert [m.id for m in listed] == [*first, *second]
        assert [m.body for m in listed] == [1, 2]
        # The failing job looked the queue up twice (the group ran together,
        # then again job by job); the first post looked it up and created
        # it; the second post found its id noted.
        queue_lookups = [sql for sql in lookups if sql.startswith("SELECT id FROM queues")]
        assert len(queue_lookups) == 3
    finally:
        await driver.close()
