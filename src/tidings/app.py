"""Build the whole ASGI application from the settings.

The storage driver opens when the server starts (ASGI lifespan) and closes
when it stops; the garbage collector runs beside the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import falcon.asgi

from tidings.api.context import Service
import msgspec

from tidings.config import WORKER_SETTINGS_ENV, Settings
from tidings.storage.base import Clock, DataDriver, system_clock
from tidings.storage.registry import driver_from_url
from tidings.transport import ws
from tidings.transport.http.app import create_http_app

log = logging.getLogger(__name__)


class Lifespan:
    """Falcon middleware that opens storage and runs background tasks."""

    def __init__(self, storage: DataDriver, gc_interval: float) -> None:
        self.storage = storage
        self.gc_interval = gc_interval
        self._gc_task: asyncio.Task[None] | None = None

    async def process_startup(self, scope: Any, event: Any) -> None:
        await self.storage.open()
        if self.gc_interval > 0:
            self._gc_task = asyncio.create_task(self._collect_garbage())

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        await self.storage.close()

    async def _collect_garbage(self) -> None:
        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                removed = await self.storage.gc()
                if removed:
                    log.info("gc removed %d expired rows", removed)
            except Exception:  # keep collecting; the next pass may succeed
                log.exception("gc pass failed")


def create_app(settings: Settings, clock: Clock = system_clock) -> falcon.asgi.App:
    storage = driver_from_url(settings.storage, sync=settings.sqlite_sync, clock=clock)
    service = Service(storage=storage, limits=settings.limits)
    app = create_http_app(service, middleware=[Lifespan(storage, settings.gc_interval)],
                          socket=ws.Endpoint(service, settings.websocket))
    ws.use_raw_frames(app)
    return app


def app_from_environment() -> falcon.asgi.App:
    """The app of one of several worker processes (``serve --workers N``):
    the parent hands its resolved settings down through the environment."""
    settings = msgspec.json.decode(os.environ[WORKER_SETTINGS_ENV], type=Settings)
    return create_app(settings)
