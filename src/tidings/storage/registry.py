"""Pick a storage driver from a URL, importing only the driver named.

Kept apart from base.py so the interface never imports a driver.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

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


def driver_from_url(url: str, *, sync: str = "full", clock: Clock = system_clock) -> DataDriver:
    scheme = urlsplit(url).scheme
    if scheme.startswith("faulty+"):  # tidings.storage.faulty wraps the driver named after it
        from tidings.storage.faulty import FaultyDriver

        return FaultyDriver.from_url(url, sync=sync, clock=clock)
    target = DRIVERS.get(scheme)
    if target is None:
        known = ", ".join(sorted(DRIVERS))
        raise ValueError(f"unknown storage scheme {scheme!r} in {url!r}; known: {known}")
    module_name, _, factory = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory).from_url(url, sync=sync, clock=clock)
