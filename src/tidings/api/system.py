"""Service-level operations: ping, health, and the documents."""

from __future__ import annotations

from typing import Any

from tidings import __version__, errors
from tidings.api.authorization import authorize, is_admin
from tidings.api.context import Context, Service


async def readiness(service: Service) -> str | None:
    """Why this process cannot serve requests now, in one line; None when
    it can. Says nothing about any project: probes need no credentials.
    (The place for every further reason, such as a full disk.)"""
    try:
        # Under a burst of pings and probes, one round trip to the storage
        # answers all that arrive while it runs.
        alive = await service.liveness.run("storage", service.storage.is_alive)
    except Exception:  # noqa: BLE001 - a storage that fails to answer is not ready
        alive = False
    if not alive:
        # A known cause (a full disk) says more than "does not answer".
        return service.storage.problem() or "the storage does not answer"
    return None


async def ping(service: Service) -> None:
    reason = await readiness(service)
    if reason is not None:
        raise errors.ServiceUnavailable(
            service.storage.problem() or "The storage backend is unreachable.")


async def health(ctx: Context) -> dict[str, Any]:
    """The storage's health; per-project figures (queue names, depths) only
    for an admin, everyone else gets totals."""
    authorize(ctx, "health:get")
    storage = ctx.storage
    details = await storage.health()
    if not is_admin(ctx):
        details = aggregated(details)
    return {
        "storage_reachable": details.get("storage_reachable", True),
        "driver": storage.name,
        "capabilities": sorted(c.value for c in storage.capabilities),
        "version": __version__,
        "details": details,
    }


def aggregated(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` with each per-queue ``message_counts`` list (a driver's,
    or each pool's under pooling) replaced by its totals."""
    shown: dict[str, Any] = {}
    for key, value in details.items():
        if key == "message_counts" and isinstance(value, list):
            shown["message_totals"] = {
                "queues": len(value),
                "messages": sum(int(c.get("messages", 0)) for c in value
                                if isinstance(c, dict)),
            }
        elif isinstance(value, dict):
            shown[key] = aggregated(value)
        else:
            shown[key] = value
    return shown


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
