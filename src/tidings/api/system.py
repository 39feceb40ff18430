"""Service-level operations: ping, health, and the documents."""

from __future__ import annotations

from typing import Any

from tidings import __version__, errors
from tidings.api.context import Context, Service
from tidings.auth import authorize


async def ping(service: Service) -> None:
    if not await service.storage.is_alive():
        raise errors.ServiceUnavailable(service.storage.problem()
                                        or "The storage backend is unreachable.")


async def health(ctx: Context) -> dict[str, Any]:
    authorize(ctx, "health:get")
    storage = ctx.storage
    details = await storage.health()
    return {
        "storage_reachable": details.get("storage_reachable", True),
        "driver": storage.name,
        "capabilities": sorted(c.value for c in storage.capabilities),
        "version": __version__,
        "details": details,
    }


def versions() -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": "2",
                "status": "CURRENT",
                "updated": "2014-09-24T04:06:47Z",
                "media-types": [
                    {"base": "application/json",
                     "type": "application/vnd.openstack.messaging-v2+json"}
                ],
                "links": [{"href": "/v2/", "rel": "self"}],
            }
        ]
    }
