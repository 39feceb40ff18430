"""The per-process metadata cache every caching driver shares
(storage/common/metadata_cache.py): bounded in time and size, copies
out, and a read overtaken by a change never put back."""

from __future__ import annotations

import asyncio

import pytest

from tidings.storage.common.metadata_cache import MetadataCache


def _cache(now: list[float], **kwargs: int) -> MetadataCache:
    return MetadataCache(1.0, monotonic=lambda: now[0], **kwargs)


def test_an_entry_lasts_its_bound_and_is_copied_out() -> None:
    now = [0.0]
    cache = _cache(now)
    cache.put("p", "q", {"a": 1}, cache.ticket())
    got = cache.get("p", "q")
    assert got == {"a": 1}
    got["a"] = 2  # the caller's copy
    assert cache.get("p", "q") == {"a": 1}
    now[0] += 1.0
    assert cache.get("p", "q") is None


def test_a_read_overtaken_by_a_change_is_not_put_back() -> None:
    cache = _cache([0.0])
    ticket = cache.ticket()  # a read starts
    cache.forget("p", "q")  # a change is heard meanwhile
    cache.put("p", "q", {"old": True}, ticket)
    assert cache.get("p", "q") is None
    cache.put("p", "q", {"new": True}, cache.ticket())
    assert cache.get("p", "q") == {"new": True}


def test_the_oldest_entry_goes_first_when_full() -> None:
    cache = _cache([0.0], size=2)
    for name in ("a", "b", "c"):
        cache.put("p", name, {"n": name}, cache.ticket())
    assert cache.get("p", "a") is None
    assert cache.get("p", "b") == {"n": "b"} and cache.get("p", "c") == {"n": "c"}
    cache.clear()
    assert cache.get("p", "b") is None


async def test_concurrent_misses_share_one_read_and_a_change_starts_another() -> None:
    cache = _cache([0.0])
    started: list[int] = []
    release = asyncio.Event()

    async def load() -> dict[str, int]:
        started.append(1)
        number = len(started)
        await release.wait()
        return {"read": number}

    early = [asyncio.ensure_future(cache.read("p", "q", load)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(started) == 1
    # A change while that read is in flight: what it returns may predate
    # it, so a reader that comes after the change reads again.
    cache.forget("p", "q")
    late = asyncio.ensure_future(cache.read("p", "q", load))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(started) == 2
    release.set()
    assert [await reader for reader in early] == [{"read": 1}] * 3
    assert await late == {"read": 2}
    assert cache.get("p", "q") == {"read": 2}


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    cache = _cache([0.0])

    async def load() -> dict[str, int]:
        raise LookupError("no such queue")

    readers = [asyncio.ensure_future(cache.read("p", "q", load)) for _ in range(2)]
    for reader in readers:
        with pytest.raises(LookupError):
            await reader
    assert cache.get("p", "q") is None
