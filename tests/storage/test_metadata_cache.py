"""The per-process metadata cache every caching driver shares
(storage/common/metadata_cache.py): bounded in time and size, copies
out, and a read overtaken by a change never put back."""

from __future__ import annotations

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
