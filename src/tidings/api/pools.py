"""Pools: the storage backends queues are spread over (Zaqar's /v2/pools).

Admin operations (the ``pools:*`` policies). They need pooling on
(``[pooling] enabled = true``); without it the pools resource does not
exist, as in Zaqar.
"""

from __future__ import annotations

from typing import Any

from tidings import errors
from tidings.api import validate
from tidings.api.authorization import authorize
from tidings.api.context import Context
from tidings.storage.pooling.control import PoolRecord
from tidings.storage.pooling.driver import PooledDriver, pool_url
from tidings.storage.registry import driver_from_url

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 20
FIELDS = ("weight", "uri", "flavor", "options")


class PoolingDisabled(errors.NotFound):
    title = "Not found"


class PoolDoesNotExist(errors.NotFound):
    pass


class PoolInUse(errors.Forbidden):
    title = "Unable to delete"


def pooled(ctx: Context) -> PooledDriver:
    storage = ctx.storage
    if not isinstance(storage, PooledDriver):
        raise PoolingDisabled("Pooling is not enabled on this server.")
    return storage


def check_name(name: str, what: str = "Pool") -> str:
    if not name or len(name) > 64 or not validate._QUEUE_NAME.match(name):
        raise errors.ValidationFailed(
            f"{what} names may only contain ASCII letters, digits, underscores and dashes, "
            "and be at most 64 characters long.")
    return name


def _uri(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise errors.InvalidBody("uri must be a non-empty string.")
    return value


def _weight(value: Any) -> int:
    weight = validate.integer(value, "weight")
    if weight < 0:
        raise errors.ValidationFailed("weight must be at least 0.")
    return weight


def _flavor(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidBody("flavor must be a string.")
    return check_name(value, "Flavor")


def _options(value: Any, ctx: Context) -> dict[str, Any]:
    if value is None:
        return {}
    return validate.nesting(validate.json_object(value, "options"), ctx.limits, "pool options")


async def can_connect(driver: PooledDriver, uri: str) -> None:
    """Refuse a URI no driver can open, as Zaqar refuses one it cannot
    connect to."""
    try:
        probe = driver_from_url(uri, sync=driver.sync, clock=driver.clock)
    except ValueError as exc:
        raise errors.ValidationFailed(str(exc)) from None
    try:
        await probe.open()
        alive = await probe.is_alive()
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot connect"
        raise errors.ValidationFailed(f"cannot connect to {uri}: {exc}") from None
    finally:
        try:
            await probe.close()
        except Exception:  # noqa: BLE001
            pass
    if not alive:
        raise errors.ValidationFailed(f"cannot connect to {uri}")


def render(pool: PoolRecord, detailed: bool) -> dict[str, Any]:
    document: dict[str, Any] = {"name": pool.name, "uri": pool.uri, "weight": pool.weight,
                                "flavor": pool.flavor}
    if detailed:
        document["options"] = pool.options
    return document


async def create(ctx: Context, name: str, document: Any) -> bool:
    """PUT: register the pool, or replace it (as Zaqar's PUT does)."""
    authorize(ctx, "pools:create")
    driver = pooled(ctx)
    check_name(name)
    body = validate.json_object(document, "pool")
    if "uri" not in body or "weight" not in body:
        raise errors.ValidationFailed("A pool needs a uri and a weight.")
    record = PoolRecord(name=name, uri=_uri(body["uri"]), weight=_weight(body["weight"]),
                        flavor=_flavor(body.get("flavor")),
                        options=_options(body.get("options"), ctx))
    await can_connect(driver, pool_url(record))
    created = await driver.control.pool_upsert(record)
    driver.invalidate()
    return created


async def get(ctx: Context, name: str, detailed: bool = False) -> dict[str, Any]:
    authorize(ctx, "pools:get")
    record = await pooled(ctx).control.pool_get(name)
    if record is None:
        raise PoolDoesNotExist(f"Pool {name} does not exist")
    return render(record, detailed)


async def list_pools(ctx: Context, *, marker: str | None, limit: int | None,
                     detailed: bool) -> tuple[list[dict[str, Any]], str | None]:
    """A page of pools and the marker of the next page (None when empty)."""
    authorize(ctx, "pools:get_all")
    limit = validate.limit(limit, DEFAULT_PER_PAGE, MAX_PER_PAGE, "pools")
    records = await pooled(ctx).control.pool_list(marker=marker, limit=limit)
    return [render(r, detailed) for r in records], (records[-1].name if records else None)


async def patch(ctx: Context, name: str, document: Any) -> dict[str, Any]:
    authorize(ctx, "pools:update")
    driver = pooled(ctx)
    body = validate.json_object(document, "pool")
    if not any(key in body for key in FIELDS):
        raise errors.ValidationFailed(
            "One of `uri`, `weight`, `flavor`, or `options` needs to be specified")
    record = await driver.control.pool_get(name)
    if record is None:
        raise PoolDoesNotExist(f"Pool {name} does not exist")
    before = pool_url(record)
    if "uri" in body:
        record.uri = _uri(body["uri"])
    if "weight" in body:
        record.weight = _weight(body["weight"])
    if "flavor" in body:
        record.flavor = _flavor(body["flavor"])
    if "options" in body:
        record.options = _options(body["options"], ctx)
    if pool_url(record) != before:
        await can_connect(driver, pool_url(record))
    await driver.control.pool_upsert(record)
    driver.invalidate()
    return render(record, False)


async def delete(ctx: Context, name: str) -> None:
    """Deregister; idempotent. Refused (403) while queues live on the pool
    (`tidings pool drain` moves them), and while it is the last pool of a
    flavor (as Zaqar refuses)."""
    authorize(ctx, "pools:delete")
    driver = pooled(ctx)
    record = await driver.control.pool_get(name)
    if record is None:
        return
    if await driver.control.queues_on(name, limit=1):
        raise PoolInUse(f"Pool {name} holds queues; it cannot be deleted. Move them off "
                        f"it first (tidings pool drain {name}).")
    if record.flavor is not None and await driver.control.flavor_get(record.flavor):
        members = [p for p in await driver.control.pool_list() if p.flavor == record.flavor]
        if len(members) == 1:
            raise PoolInUse(f"This pool is used by flavors {record.flavor}; "
                            "It cannot be deleted.")
    await driver.control.pool_delete(name)
    driver.invalidate()
    await driver.pools(fresh=True)  # closes the pool's driver
