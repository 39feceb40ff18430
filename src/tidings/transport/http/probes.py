"""``GET /healthz`` and ``GET /readyz``: the probes of load balancers,
orchestrators and service managers.

They need no header and no credentials (a probe holds no token and names
no project) and say nothing about any project: a one-line ``text/plain``
body. ``/healthz``: the process answers. ``/readyz``: it can serve, per
``api.system.readiness``; 503 with the reason when not. ``/v2/ping`` and
``/v2/health`` keep Zaqar's rules (Client-ID, X-Project-ID) for its clients.
"""

from __future__ import annotations

import falcon
import falcon.asgi

from tidings.api import system
from tidings.api.context import Service

HEALTHZ = "/healthz"
READYZ = "/readyz"


class Healthz:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "ok\n"

    on_head = on_get


class Readyz:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        reason = await system.readiness(self.service)
        resp.content_type = falcon.MEDIA_TEXT
        if reason is None:
            resp.text = "ready\n"
        else:
            resp.status = falcon.HTTP_503
            resp.text = f"not ready: {reason}\n"

    on_head = on_get


def routes(service: Service) -> list[tuple[str, object]]:
    return [(HEALTHZ, Healthz()), (READYZ, Readyz(service))]
