"""Queues: creation, metadata, deletion, listing, counting, stats, purge."""

from __future__ import annotations

import time

import pytest

from tests.storage.helpers import claim, list_ids, metadata_caches, post, second_process
from tidings import errors
from tidings.storage.base import QueueFilters
from tidings.storage.common.metadata_cache import METADATA_CACHE_SECONDS


async def names(driver, project, **kwargs) -> list[str]:
    kwargs.setdefault("marker", None)
    kwargs.setdefault("limit", 100)
    kwargs.setdefault("detailed", False)
    return [record.name for record in await driver.queues.list(project, **kwargs)]


# --- create and metadata ----------------------------------------------------


async def test_create_returns_true_then_false(driver, project):
    assert await driver.queues.create(project, "q", {}) is True
    assert await driver.queues.create(project, "q", {}) is False


async def test_create_of_existing_queue_keeps_its_metadata(driver, project):
    await driver.queues.create(project, "q", {"a": 1})
    assert await driver.queues.create(project, "q", {"b": 2}) is False
    assert await driver.queues.get_metadata(project, "q") == {"a": 1}


async def test_get_metadata_returns_what_create_stored(driver, project):
    metadata = {"_default_message_ttl": 60, "nested": {"x": [1, "two", None]}, "u": "h\u00e9"}
    await driver.queues.create(project, "q", metadata)
    assert await driver.queues.get_metadata(project, "q") == metadata


async def test_another_process_sees_changed_metadata_within_the_bound(driver, project):
    """Drivers may cache metadata per process: a change made by one
    process reaches another within METADATA_CACHE_SECONDS at worst (the
    other's cache clock is advanced by hand: no timing in the test)."""
    await driver.queues.create(project, "q", {"v": 1})
    async with second_process(driver) as other:
        assert await other.queues.get_metadata(project, "q") == {"v": 1}
        # From here the caches (the pooled driver's open with that read)
        # tell time by hand, starting from the real clock they stamped with.
        now = [time.monotonic()]
        for cache in metadata_caches(other):
            cache.monotonic = lambda: now[0]
        await driver.queues.set_metadata(project, "q", {"v": 2})
        now[0] += METADATA_CACHE_SECONDS
        assert await other.queues.get_metadata(project, "q") == {"v": 2}
        await driver.queues.delete(project, "q")
        now[0] += METADATA_CACHE_SECONDS
        with pytest.raises(errors.QueueDoesNotExist):
            await other.queues.get_metadata(project, "q")


async def test_own_metadata_changes_are_seen_at_once(driver, project):
    await driver.queues.create(project, "q", {"v": 1})
    assert await driver.queues.get_metadata(project, "q") == {"v": 1}
    await driver.queues.set_metadata(project, "q", {"v": 2})
    assert await driver.queues.get_metadata(project, "q") == {"v": 2}
    await driver.queues.delete(project, "q")
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.get_metadata(project, "q")
    await driver.queues.create(project, "q", {"v": 3})
    assert await driver.queues.get_metadata(project, "q") == {"v": 3}


async def test_get_metadata_of_missing_queue_raises(driver, project):
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.get_metadata(project, "missing")


async def test_set_metadata_replaces_it(driver, project):
    await driver.queues.create(project, "q", {"a": 1, "b": 2})
    await driver.queues.set_metadata(project, "q", {"c": 3})
    assert await driver.queues.get_metadata(project, "q") == {"c": 3}


async def test_set_metadata_of_missing_queue_raises_and_creates_nothing(driver, project):
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.set_metadata(project, "missing", {"a": 1})
    assert await names(driver, project) == []


# --- delete ------------------------------------------------------------------


async def test_delete_removes_the_queue(driver, project):
    await driver.queues.create(project, "q", {"a": 1})
    await driver.queues.delete(project, "q")
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.get_metadata(project, "q")
    assert await names(driver, project) == []


async def test_delete_is_idempotent(driver, project):
    await driver.queues.delete(project, "never-existed")
    await driver.queues.create(project, "q", {})
    await driver.queues.delete(project, "q")
    await driver.queues.delete(project, "q")
    assert await names(driver, project) == []


async def test_delete_removes_messages_and_claims(driver, project):
    posted = await post(driver, project, "q", 4)
    claim_id, claimed = await claim(driver, project, "q", limit=2)
    assert claim_id is not None and len(claimed) == 2

    await driver.queues.delete(project, "q")
    await driver.queues.create(project, "q", {})

    assert await list_ids(driver, project, "q", include_claimed=True) == []
    assert await driver.messages.bulk_get(project, "q", posted) == []
    for message_id in posted:
        with pytest.raises(errors.MessageDoesNotExist):
            await driver.messages.get(project, "q", message_id)
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)
    assert (await driver.queues.stats(project, "q")).total == 0


# --- list -------------------------------------------------------------------


async def test_list_is_in_name_order(driver, project):
    for name in ["delta", "alpha", "charlie", "bravo"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project) == ["alpha", "bravo", "charlie", "delta"]


async def test_list_orders_names_by_code_point(driver, project):
    # Zaqar names are ASCII letters, digits, "-" and "_": upper case sorts
    # before lower case and "-" < digits < "_", whatever the locale.
    given = ["b", "B", "a_1", "a-1", "a1", "A", "_z", "0", "Z-"]
    for name in given:
        await driver.queues.create(project, name, {})
    assert await names(driver, project) == sorted(given)
    assert await names(driver, project, marker="Z-") == sorted(n for n in given if n > "Z-")


async def test_list_of_project_without_queues_is_empty(driver, project):
    assert await names(driver, project) == []


async def test_list_is_strictly_after_marker(driver, project):
    for name in ["a", "b", "c", "d"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, marker="b") == ["c", "d"]


async def test_list_with_marker_equal_to_first_name_skips_it(driver, project):
    for name in ["a", "b", "c"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, marker="a") == ["b", "c"]


async def test_list_with_unknown_marker_starts_after_it(driver, project):
    for name in ["apple", "banana", "cherry"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, marker="b") == ["banana", "cherry"]
    assert await names(driver, project, marker="bz") == ["cherry"]
    assert await names(driver, project, marker="zzz") == []


async def test_list_respects_limit(driver, project):
    for name in ["a", "b", "c", "d", "e"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, limit=2) == ["a", "b"]
    assert await names(driver, project, marker="b", limit=2) == ["c", "d"]
    assert await names(driver, project, marker="d", limit=2) == ["e"]


async def test_list_pages_through_every_queue_once(driver, project):
    expected = sorted(f"q{i:02d}" for i in range(23))
    for name in reversed(expected):
        await driver.queues.create(project, name, {})
    seen: list[str] = []
    marker = None
    while True:
        page = await names(driver, project, marker=marker, limit=5)
        if not page:
            break
        seen += page
        marker = page[-1]
    assert seen == expected


async def test_list_detailed_returns_metadata(driver, project):
    await driver.queues.create(project, "a", {"x": 1})
    await driver.queues.create(project, "b", {})
    records = await driver.queues.list(project, marker=None, limit=10, detailed=True)
    assert [(r.name, r.metadata) for r in records] == [("a", {"x": 1}), ("b", {})]


async def test_list_filters_by_name_substring(driver, project):
    for name in ["orders", "old-orders", "invoices", "order"]:
        await driver.queues.create(project, name, {})
    found = await names(driver, project, filters=QueueFilters(name="order"))
    assert found == ["old-orders", "order", "orders"]


async def test_list_filters_by_metadata_value(driver, project):
    await driver.queues.create(project, "a", {"env": "prod", "team": "x"})
    await driver.queues.create(project, "b", {"env": "dev", "team": "x"})
    await driver.queues.create(project, "c", {"env": "prod", "team": "y"})
    await driver.queues.create(project, "d", {})
    prod = QueueFilters(metadata=(("env", "prod"),))
    assert await names(driver, project, filters=prod) == ["a", "c"]
    prod_x = QueueFilters(metadata=(("env", "prod"), ("team", "x")))
    assert await names(driver, project, filters=prod_x) == ["a"]
    assert await names(driver, project, filters=QueueFilters(metadata=(("env", "qa"),))) == []


@pytest.mark.parametrize("key", ["a.b", 'say "hi"', "back\\slash", "[0]", "$", "\u00e9t\u00e9", ""])
async def test_list_filters_by_metadata_key_with_special_characters(driver, project, key):
    await driver.queues.create(project, "hit", {key: "yes", "other": "no"})
    await driver.queues.create(project, "miss", {key: "no", "other": "yes"})
    await driver.queues.create(project, "none", {"other": "yes"})
    filters = QueueFilters(metadata=((key, "yes"),))
    assert await names(driver, project, filters=filters) == ["hit"]
    assert await driver.queues.count(project, filters) == 1


async def test_list_filter_by_name_takes_wildcard_characters_literally(driver, project):
    for name in ["a_b", "axb", "a%b", "ab", "a-b"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, filters=QueueFilters(name="_")) == ["a_b"]
    assert await names(driver, project, filters=QueueFilters(name="%")) == ["a%b"]
    assert await names(driver, project, filters=QueueFilters(name="-")) == ["a-b"]


async def test_list_filter_by_name_is_case_sensitive(driver, project):
    for name in ["Jobs", "jobs", "JOBS"]:
        await driver.queues.create(project, name, {})
    assert await names(driver, project, filters=QueueFilters(name="job")) == ["jobs"]


async def test_list_filters_by_name_and_metadata_together(driver, project):
    await driver.queues.create(project, "jobs-a", {"env": "prod"})
    await driver.queues.create(project, "jobs-b", {"env": "dev"})
    await driver.queues.create(project, "mail", {"env": "prod"})
    filters = QueueFilters(name="jobs", metadata=(("env", "prod"),))
    assert await names(driver, project, filters=filters) == ["jobs-a"]


async def test_list_filters_with_marker_and_limit(driver, project):
    for name in ["x1", "y1", "x2", "x3", "x4"]:
        await driver.queues.create(project, name, {})
    filters = QueueFilters(name="x")
    assert await names(driver, project, filters=filters, limit=2) == ["x1", "x2"]
    assert await names(driver, project, filters=filters, marker="x2", limit=2) == ["x3", "x4"]


async def test_queue_created_by_post_is_listed_with_empty_metadata(driver, project):
    await post(driver, project, "lazy")
    records = await driver.queues.list(project, marker=None, limit=10, detailed=True)
    assert [(r.name, r.metadata) for r in records] == [("lazy", {})]
    assert await driver.queues.get_metadata(project, "lazy") == {}


# --- count ------------------------------------------------------------------


async def test_count(driver, project):
    assert await driver.queues.count(project) == 0
    for name in ["a", "b", "c"]:
        await driver.queues.create(project, name, {})
    assert await driver.queues.count(project) == 3
    await driver.queues.delete(project, "b")
    assert await driver.queues.count(project) == 2


async def test_count_with_filters(driver, project):
    await driver.queues.create(project, "jobs-a", {"env": "prod"})
    await driver.queues.create(project, "jobs-b", {"env": "dev"})
    await driver.queues.create(project, "mail", {"env": "prod"})
    assert await driver.queues.count(project, QueueFilters(name="jobs")) == 2
    assert await driver.queues.count(project, QueueFilters(metadata=(("env", "prod"),))) == 2
    both = QueueFilters(name="jobs", metadata=(("env", "prod"),))
    assert await driver.queues.count(project, both) == 1
    assert await driver.queues.count(project, QueueFilters(name="nothing")) == 0


# --- stats ------------------------------------------------------------------


async def test_stats_of_missing_queue_are_zeros(driver, project):
    stats = await driver.queues.stats(project, "missing")
    assert (stats.claimed, stats.free, stats.total) == (0, 0, 0)
    assert stats.oldest is None and stats.newest is None


async def test_stats_of_empty_queue_are_zeros(driver, project):
    await driver.queues.create(project, "q", {})
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free, stats.total) == (0, 0, 0)
    assert stats.oldest is None and stats.newest is None


async def test_stats_count_claimed_and_free(driver, project):
    await post(driver, project, "q", 5)
    await claim(driver, project, "q", limit=2)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free, stats.total) == (2, 3, 5)


async def test_stats_count_delayed_messages_as_free(driver, project):
    await post(driver, project, "q", 2, delay=100)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free, stats.total) == (0, 2, 2)


async def test_stats_count_released_claims_as_free(driver, project):
    await post(driver, project, "q", 3)
    claim_id, _ = await claim(driver, project, "q", limit=3)
    await driver.claims.delete(project, "q", claim_id)
    stats = await driver.queues.stats(project, "q")
    assert (stats.claimed, stats.free) == (0, 3)


async def test_stats_oldest_and_newest(driver, project, clock):
    first = await post(driver, project, "q")
    clock.advance(10)
    await post(driver, project, "q")
    clock.advance(10)
    last = await post(driver, project, "q")
    clock.advance(5)
    stats = await driver.queues.stats(project, "q")
    assert stats.oldest is not None and stats.newest is not None
    assert stats.oldest.id == first[0]
    assert stats.oldest.age == 25
    assert stats.newest.id == last[0]
    assert stats.newest.age == 5
    assert stats.oldest.created == pytest.approx(clock() - 25)
    assert stats.newest.created == pytest.approx(clock() - 5)


async def test_stats_oldest_and_newest_include_claimed_messages(driver, project):
    posted = await post(driver, project, "q", 3)
    await claim(driver, project, "q", limit=3)
    stats = await driver.queues.stats(project, "q")
    assert stats.oldest.id == posted[0]
    assert stats.newest.id == posted[-1]


async def test_stats_after_deleting_oldest(driver, project):
    posted = await post(driver, project, "q", 3)
    await driver.messages.delete(project, "q", posted[0], None)
    stats = await driver.queues.stats(project, "q")
    assert stats.total == 2
    assert stats.oldest.id == posted[1]
    assert stats.newest.id == posted[2]


# --- purge ------------------------------------------------------------------


async def test_purge_removes_messages_and_claims_but_keeps_queue(driver, project):
    await driver.queues.create(project, "q", {"keep": True})
    posted = await post(driver, project, "q", 4)
    claim_id, _ = await claim(driver, project, "q", limit=2)

    await driver.queues.purge_messages(project, "q")

    assert await driver.queues.get_metadata(project, "q") == {"keep": True}
    assert await names(driver, project) == ["q"]
    assert await list_ids(driver, project, "q", include_claimed=True) == []
    assert await driver.messages.bulk_get(project, "q", posted) == []
    assert (await driver.queues.stats(project, "q")).total == 0
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "q", claim_id)


async def test_purge_of_missing_queue_is_a_no_op(driver, project):
    await driver.queues.purge_messages(project, "missing")
    assert await names(driver, project) == []


async def test_queue_accepts_messages_after_purge(driver, project):
    await post(driver, project, "q", 2)
    await driver.queues.purge_messages(project, "q")
    posted = await post(driver, project, "q", 2)
    assert await list_ids(driver, project, "q") == posted
