"""A pool's options reach its driver: SQLite's sync mode, Redis's key
prefix, PostgreSQL's pool size; a change of options reopens the driver,
and options a driver refuses are refused when the pool is registered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.pooling.support import pooled_over
from tests.support.clock import FakeClock
from tests.support.postgres_server import shared_server
from tests.support.redis_server import session_redis, unique_prefix
from tests.support.server import ServerProcess
from tidings.storage.base import NewMessage
from tidings.storage.pooling.control import PoolRecord
from tidings.storage.pooling.driver import pool_url

CLIENT = "11111111-1111-4111-8111-111111111111"


def test_pool_url_adds_scalar_options_over_the_uris_own() -> None:
    record = PoolRecord(name="a", uri="redis://127.0.0.1:1/0?prefix=old:&socket_timeout=2",
                        weight=1, options={"prefix": "new:", "unreliable": True,
                                           "max_size": 3, "note": {"kept": "not passed"}})
    assert pool_url(record) == ("redis://127.0.0.1:1/0?socket_timeout=2&prefix=new%3A"
                                "&unreliable=true&max_size=3")
    assert pool_url(PoolRecord(name="b", uri="sqlite:///x.db", weight=1)) == "sqlite:///x.db"


async def test_options_reach_the_pools_drivers(tmp_path: Path) -> None:
    pg = shared_server()
    database = f"opts_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    redis_server = session_redis()
    first, second = unique_prefix(), unique_prefix()
    urls = {"lite": f"sqlite:///{tmp_path}/lite.db", "red": redis_server.url,
            "pg": pg.url(database)}
    async with pooled_over(tmp_path, FakeClock(), urls) as pooled:
        for name, options in (("lite", {"sync": "off"}), ("red", {"prefix": first}),
                              ("pg", {"max_size": 2, "command_timeout": 7})):
            record = await pooled.control.pool_get(name)
            assert record is not None
            record.options = options
            await pooled.control.pool_upsert(record)
        pooled.invalidate()
        lite, red, pgd = [await pooled.driver_for(n) for n in ("lite", "red", "pg")]
        assert lite.sync == "off"  # type: ignore[attr-defined]
        assert (pgd.max_size, pgd.command_timeout) == (2, 7.0)  # type: ignore[attr-defined]
        assert red.keys.prefix == first  # type: ignore[attr-defined]

        # The data of a queue on the Redis pool is under the option's prefix.
        project = "opts"
        await pooled.control.place(project, "q", "red")
        await pooled.messages.post(project, "q", [NewMessage(body=1, ttl=600)], CLIENT)
        client = aioredis.from_url(redis_server.url)
        try:
            assert await client.keys(f"{first}*")

            # New options: the pool's driver is reopened with them.
            record = await pooled.control.pool_get("red")
            assert record is not None
            record.options = {"prefix": second}
            await pooled.control.pool_upsert(record)
            await pooled.pools(fresh=True)
            reopened = await pooled.driver_for("red")
            assert reopened is not red and reopened.keys.prefix == second  # type: ignore[attr-defined]
            await pooled.messages.post(project, "q", [NewMessage(body=2, ttl=600)], CLIENT)
            assert await client.keys(f"{second}*")
        finally:
            await client.aclose()


@pytest.fixture(scope="module")
def pooled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("options")
    server = ServerProcess(
        storage=f"sqlite:///{base}/unused.db", log_path=base / "server.log",
        env={"TIDINGS_POOLING__ENABLED": "true",
             "TIDINGS_POOLING__CONTROL_STORAGE": f"sqlite:///{base}/control.db"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_api_refuses_options_the_driver_refuses(pooled_server: ServerProcess,
                                                    tmp_path: Path) -> None:
    redis_url = session_redis().url
    with httpx.Client(base_url=pooled_server.url,
                      headers={"X-Project-ID": "admin", "Client-ID": str(uuid.uuid4())}) as http:
        bad = http.put("/v2/pools/r", json={"uri": redis_url, "weight": 1,
                                            "options": {"socket_timeout": "soon"}})
        assert bad.status_code == 400 and "socket_timeout" in bad.json()["description"]
        good = http.put("/v2/pools/r", json={"uri": redis_url, "weight": 1,
                                             "options": {"prefix": unique_prefix()}})
        assert good.status_code == 201
        patched = http.patch("/v2/pools/r", json={"options": {"socket_timeout": -1}})
        assert patched.status_code == 400
        assert http.get("/v2/pools/r?detailed=true").json()["options"] != {
            "socket_timeout": -1}
