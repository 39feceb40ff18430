"""The storage the settings name: the one place that chooses between the
pooled driver and a single backend, so the servers and the command-line
tools open the same thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidings.storage.base import Clock, DataDriver, system_clock

if TYPE_CHECKING:
    from tidings.config import Settings


def build_storage(settings: Settings, clock: Clock = system_clock) -> DataDriver:
    """The storage of the settings: the pooled driver when pooling is on,
    else the driver of ``settings.storage``."""
    from tidings.storage.registry import driver_from_url

    pooling = getattr(settings, "pooling", None)
    if pooling is not None and pooling.enabled:
        from tidings.storage.pooling.control import control_from_url
        from tidings.storage.pooling.driver import PooledDriver

        return PooledDriver(control_from_url(pooling.control_storage),
                            sync=settings.sqlite_sync, dead_retention=settings.dead_retention,
                            clock=clock,
                            cache_seconds=pooling.cache_seconds, move_wait=pooling.move_wait)
    return driver_from_url(settings.storage, sync=settings.sqlite_sync,
                           dead_retention=settings.dead_retention, clock=clock)
