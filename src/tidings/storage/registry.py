"""Pick a storage driver from a URL, importing only the driver named.

Kept apart from base.py so the interface never imports a driver.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tidings.config import DEAD_RETENTION
from tidings.storage.base import Clock, DataDriver, system_clock

# scheme -> "module:factory"; the factory takes (url, settings, clock).
DRIVERS: dict[str, str] = {
    "sqlite": "tidings.storage.sqlite.driver:SqliteDriver",
    **dict.fromkeys(
        ("redis", "rediss", "redis+cluster", "rediss+cluster"),
        "tidings.storage.redis.driver:RedisDriver",
    ),
    "postgres": "tidings.storage.postgres.driver:PostgresDriver",
    "postgresql": "tidings.storage.postgres.driver:PostgresDriver",
}

# URL prefix -> "module:class" of a driver that wraps the one named after
# the prefix (``faulty+sqlite:///...``). The class's ``from_url(url,
# open_inner=...)`` takes the whole URL and a function opening the inner
# driver from the URL it keeps for it, so a wrapper never imports this
# module.
WRAPPERS: dict[str, str] = {
    "faulty": "tidings.storage.faulty:FaultyDriver",
}


def _load(target: str) -> Any:
    """The driver class named ``module:class``, importing only its module."""
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


# Settings that are URL options of a driver: a URL that names none gets the
# setting's value here. SQLite's ``sync`` (the ``sqlite_sync`` setting) goes
# to SQLite URLs only, so no other driver sees it; ``dead_retention`` goes
# to every driver.
SQLITE_SCHEME = "sqlite"


def with_defaults(url: str, defaults: dict[str, str]) -> str:
    """``url`` with each option of ``defaults`` it does not name added."""
    parts = urlsplit(url)
    named = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    added = "&".join(f"{key}={value}" for key, value in defaults.items() if key not in named)
    if not added:
        return url
    return f"{url}{'&' if parts.query else '?'}{added}"


def driver_from_url(url: str, *, sync: str = "full", dead_retention: float = DEAD_RETENTION,
                    clock: Clock = system_clock) -> DataDriver:
    """The driver of ``url``, not yet opened. ``sync`` is the SQLite sync
    mode and ``dead_retention`` the seconds gc keeps a dead delivery, for a
    URL that names none."""
    scheme = urlsplit(url).scheme
    prefix, plus, _ = scheme.partition("+")
    wrapper = WRAPPERS.get(prefix) if plus else None
    if wrapper is not None:
        def open_inner(inner_url: str) -> DataDriver:
            return driver_from_url(inner_url, sync=sync, dead_retention=dead_retention,
                                   clock=clock)

        return _load(wrapper).from_url(url, open_inner=open_inner)
    target = DRIVERS.get(scheme)
    if target is None:
        known = ", ".join(sorted(DRIVERS))
        raise ValueError(f"unknown storage scheme {scheme!r} in {url!r}; known: {known}")
    defaults = {"dead_retention": repr(float(dead_retention))}
    if scheme == SQLITE_SCHEME:
        defaults["sync"] = sync
    return _load(target).from_url(with_defaults(url, defaults), clock=clock)
