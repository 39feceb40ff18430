"""Falcon resources of the admin API: /v2/pools and /v2/flavors."""

from __future__ import annotations

from typing import Any, Callable

import falcon

from tidings.api import flavors, pools
from tidings.api.context import Service
from tidings.transport.http.request import (
    bool_param,
    context,
    int_param,
    json_response,
    read_body,
    str_param,
)
from tidings.transport.http.resources import SMALL_BODY, Req, Resource, Resp


def _listing(req: Req, key: str, items: list[dict[str, Any]], marker: str | None,
             limit: int | None, detailed: bool | None) -> dict[str, Any]:
    for item in items:
        item["href"] = f"{req.path}/{item['name']}"
    links = []
    if items:
        query = f"?marker={marker}"
        if limit is not None:
            query += f"&limit={limit}"
        if detailed:
            query += "&detailed=true"
        links.append({"rel": "next", "href": req.path + query})
    return {key: items, "links": links}


class _Collection(Resource):
    key = ""
    lister: Callable[..., Any]

    async def on_get(self, req: Req, resp: Resp) -> None:
        ctx = context(req, self.service)
        limit = int_param(req, "limit")
        detailed = bool_param(req, "detailed")
        items, marker = await type(self).lister(ctx, marker=str_param(req, "marker"),
                                                limit=limit, detailed=detailed)
        json_response(resp, _listing(req, self.key, items, marker, limit, detailed))


class PoolCollection(_Collection):
    key = "pools"
    lister = staticmethod(pools.list_pools)


class FlavorCollection(_Collection):
    key = "flavors"
    lister = staticmethod(flavors.list_flavors)


class _Item(Resource):
    ops: Any = None
    detailed_by_default = False

    async def on_put(self, req: Req, resp: Resp, name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "request")
        await self.ops.create(ctx, name, document)
        # Zaqar answers 201 to a PUT that creates or replaces.
        resp.status = falcon.HTTP_201
        resp.location = req.path

    async def on_get(self, req: Req, resp: Resp, name: str) -> None:
        ctx = context(req, self.service)
        document = await self.ops.get(ctx, name, bool_param(req, "detailed",
                                                             self.detailed_by_default))
        document["href"] = req.path
        json_response(resp, document)

    async def on_patch(self, req: Req, resp: Resp, name: str) -> None:
        ctx = context(req, self.service)
        document, _ = await read_body(req, SMALL_BODY, "request")
        result = await self.ops.patch(ctx, name, document)
        result["href"] = req.path
        json_response(resp, result)

    async def on_delete(self, req: Req, resp: Resp, name: str) -> None:
        await self.ops.delete(context(req, self.service), name)
        resp.status = falcon.HTTP_204


class PoolItem(_Item):
    ops = pools


class FlavorItem(_Item):
    ops = flavors
    detailed_by_default = True


def routes(service: Service) -> list[tuple[str, Any]]:
    return [
        ("/v2/pools", PoolCollection(service)),
        ("/v2/pools/{name}", PoolItem(service)),
        ("/v2/flavors", FlavorCollection(service)),
        ("/v2/flavors/{name}", FlavorItem(service)),
    ]
