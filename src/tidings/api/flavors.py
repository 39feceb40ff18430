"""Flavors: named groups of pools (Zaqar's /v2/flavors).

A queue whose ``_flavor`` metadata names a flavor is placed on one of the
flavor's pools. A flavor's pools are the pools whose ``flavor`` is its
name; ``pool_list`` in a PUT or PATCH sets that field on the pools named.
Listing and reading are ``flavors:get_all`` / ``flavors:get`` (open to
projects under Zaqar's policy); the rest are admin operations.
"""

from __future__ import annotations

from typing import Any

from tidings import errors
from tidings.api import validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.api.pools import DEFAULT_PER_PAGE, MAX_PER_PAGE, check_name, pooled
from tidings.storage.pooling.control import FlavorRecord
from tidings.storage.pooling.driver import PooledDriver


class FlavorDoesNotExist(errors.NotFound):
    pass


def _pool_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidBody("pool_list must be an array of pool names.")
    return value


def _capabilities(value: Any, ctx: Context) -> dict[str, Any]:
    if value is None:
        return {}
    return validate.nesting(validate.json_object(value, "capabilities"), ctx.limits,
                            "flavor capabilities")


async def _members(driver: PooledDriver, name: str) -> list[str]:
    return [p.name for p in await driver.control.pool_list() if p.flavor == name]


async def _set_pools(driver: PooledDriver, name: str, pool_list: list[str]) -> None:
    """Make ``pool_list`` the flavor's pools."""
    wanted = set(pool_list)
    pools = {p.name: p for p in await driver.control.pool_list()}
    missing = sorted(wanted - set(pools))
    if missing:
        raise errors.ValidationFailed(f"Pools {', '.join(missing)} do not exist.")
    for pool in pools.values():
        if pool.name in wanted and pool.flavor != name:
            pool.flavor = name
            await driver.control.pool_upsert(pool)
        elif pool.name not in wanted and pool.flavor == name:
            pool.flavor = None
            await driver.control.pool_upsert(pool)
    driver.invalidate()


async def render(driver: PooledDriver, flavor: FlavorRecord, detailed: bool = True
                 ) -> dict[str, Any]:
    document: dict[str, Any] = {"name": flavor.name,
                                "pool_list": await _members(driver, flavor.name)}
    if detailed:
        document["capabilities"] = flavor.capabilities
    return document


async def create(ctx: Context, name: str, document: Any) -> bool:
    authorize(ctx, "flavors:create")
    driver = pooled(ctx)
    check_name(name, "Flavor")
    body = validate.json_object(document, "flavor")
    pool_list = body.get("pool_list")
    if pool_list is None and isinstance(body.get("pool_group"), str):
        pool_list = [body["pool_group"]]  # the older API named one group
    pool_list = _pool_list(pool_list if pool_list is not None else [])
    record = FlavorRecord(name=name, capabilities=_capabilities(body.get("capabilities"), ctx))
    await _set_pools(driver, name, pool_list)  # checks the pools first
    return await driver.control.flavor_upsert(record)


async def get(ctx: Context, name: str, detailed: bool = True) -> dict[str, Any]:
    authorize(ctx, "flavors:get")
    driver = pooled(ctx)
    record = await driver.control.flavor_get(name)
    if record is None:
        raise FlavorDoesNotExist(f"Flavor {name} does not exist")
    return await render(driver, record, detailed)


async def list_flavors(ctx: Context, *, marker: str | None, limit: int | None,
                       detailed: bool) -> tuple[list[dict[str, Any]], str | None]:
    authorize(ctx, "flavors:get_all")
    driver = pooled(ctx)
    limit = validate.limit(limit, DEFAULT_PER_PAGE, MAX_PER_PAGE, "flavors")
    records = await driver.control.flavor_list(marker=marker, limit=limit)
    return ([await render(driver, r, detailed) for r in records],
            records[-1].name if records else None)


async def patch(ctx: Context, name: str, document: Any) -> dict[str, Any]:
    authorize(ctx, "flavors:update")
    driver = pooled(ctx)
    body = validate.json_object(document, "flavor")
    if "pool_list" not in body and "capabilities" not in body:
        raise errors.ValidationFailed("One of `pool_list` or `capabilities` needs to be "
                                      "specified")
    record = await driver.control.flavor_get(name)
    if record is None:
        raise FlavorDoesNotExist(f"Flavor {name} does not exist")
    if "pool_list" in body:
        await _set_pools(driver, name, _pool_list(body["pool_list"]))
    if "capabilities" in body:
        record.capabilities = _capabilities(body["capabilities"], ctx)
        await driver.control.flavor_upsert(record)
    return await render(driver, record)


async def delete(ctx: Context, name: str) -> None:
    """Idempotent; the flavor's pools stay, without a flavor."""
    authorize(ctx, "flavors:delete")
    driver = pooled(ctx)
    if await driver.control.flavor_get(name) is None:
        return
    await _set_pools(driver, name, [])
    await driver.control.flavor_delete(name)
