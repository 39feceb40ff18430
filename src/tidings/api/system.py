"""Service-level operations: ping, health, and the documents."""

from __future__ import annotations

from typing import Any

from tidings import __version__, errors
from tidings.api.context import Context, Service
from tidings.auth import authorize


async def readiness(service: Service) -> str | None:
    """Why this process cannot serve requests now, in one line; None when
    it can. Says nothing about any project: probes need no credentials.
    (The place for every further reason, such as a full disk.)"""
    try:
        alive = await service.storage.is_alive()
    except Exception:  # noqa: BLE001 - a storage that fails to answer is not ready
        alive = False
    if not alive:
        return "the storage does not answer"
    return None


async def ping(service: Service) -> None:
    if await readiness(service) is not None:
        raise errors.ServiceUnavailable("The storage backend is unreachable.")


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
