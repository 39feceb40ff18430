"""The control store on PostgreSQL: ``postgres://user@host:port/db``.

Three tables (``control_pools``, ``control_flavors``,
``control_catalogue``), created at open; they may share a database with a
pool's data, whose tables have other names. Each compare-and-set of the
move protocol is one UPDATE whose WHERE names the state it expects.
``place`` takes a share lock on the pool's row: a drain's
``pool_set_draining`` (an UPDATE of that row) then either waits for the
placement to commit, and finds its queue, or commits first, and the
placement re-reads the row and sees the pool draining.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from tidings.storage.common.opened import opened
from tidings.storage.pooling.control import (
    MOVING,
    ControlDriver,
    FlavorRecord,
    Placement,
    PoolRecord,
)

# Any constant unique to this schema: serialises concurrent creations.
_SCHEMA_LOCK = 0x7469_6469_6E67_73
_SCHEMA = """
CREATE TABLE IF NOT EXISTS control_pools (
    name TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    weight INTEGER NOT NULL,
    flavor TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    draining BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS control_flavors (
    name TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS control_catalogue (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    pool TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '',
    target TEXT,
    source TEXT,
    PRIMARY KEY (project, queue)
);
CREATE INDEX IF NOT EXISTS control_catalogue_pool ON control_catalogue (pool);
CREATE INDEX IF NOT EXISTS control_catalogue_source ON control_catalogue (source)
    WHERE source IS NOT NULL;
"""
_POOL_COLUMNS = "name, uri, weight, flavor, options, draining"


def _pool(row: Any) -> PoolRecord:
    return PoolRecord(name=row[0], uri=row[1], weight=row[2], flavor=row[3],
                      options=msgspec.json.decode(row[4]), draining=row[5])


class PostgresControlDriver(ControlDriver):
    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresControlDriver:
        """``max_size=`` bounds the connection pool (default 4); other options
        go to asyncpg."""
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        max_size = int(options.pop("max_size", "4"))
        return cls(urlunsplit(parts._replace(query=urlencode(options))), max_size=max_size)

    @property
    def db(self) -> asyncpg.Pool:
        return opened(self._pool, "control store")

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_size,
                                         timeout=10)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.wait_for(pool.close(), 10)

    # --- pools ---------------------------------------------------------------
    async def pool_upsert(self, pool: PoolRecord) -> bool:
        # xmax = 0 only on a row this statement inserted.
        return bool(await self.db.fetchval(
            "INSERT INTO control_pools (name, uri, weight, flavor, options) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET uri = excluded.uri, "
            "weight = excluded.weight, flavor = excluded.flavor, options = excluded.options "
            "RETURNING xmax = 0",
            pool.name, pool.uri, pool.weight, pool.flavor,
            msgspec.json.encode(pool.options).decode()))

    async def pool_get(self, name: str) -> PoolRecord | None:
        row = await self.db.fetchrow(
            f"SELECT {_POOL_COLUMNS} FROM control_pools WHERE name = $1", name)
        return _pool(row) if row else None

    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        rows = await self.db.fetch(
            f"SELECT {_POOL_COLUMNS} FROM control_pools WHERE name > $1 "
            "ORDER BY name COLLATE \"C\" LIMIT $2", marker or "", limit)
        return [_pool(row) for row in rows]

    async def pool_delete(self, name: str) -> None:
        await self.db.execute("DELETE FROM control_pools WHERE name = $1", name)

    async def pool_set_draining(self, name: str, draining: bool) -> None:
        await self.db.execute("UPDATE control_pools SET draining = $2 WHERE name = $1",
                              name, draining)

    # --- flavors -------------------------------------------------------------
    async def flavor_upsert(self, flavor: FlavorRecord) -> bool:
        return bool(await self.db.fetchval(
            "INSERT INTO control_flavors (name, capabilities) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET capabilities = excluded.capabilities "
            "RETURNING xmax = 0",
            flavor.name, msgspec.json.encode(flavor.capabilities).decode()))

    async def flavor_get(self, name: str) -> FlavorRecord | None:
        row = await self.db.fetchrow(
            "SELECT name, capabilities FROM control_flavors WHERE name = $1", name)
        return FlavorRecord(row[0], msgspec.json.decode(row[1])) if row else None

    async def flavor_list(self, *, marker: str | None = None, limit: int | None = None
                          ) -> list[FlavorRecord]:
        rows = await self.db.fetch(
            "SELECT name, capabilities FROM control_flavors WHERE name > $1 "
            "ORDER BY name COLLATE \"C\" LIMIT $2", marker or "", limit)
        return [FlavorRecord(r[0], msgspec.json.decode(r[1])) for r in rows]

    async def flavor_delete(self, name: str) -> None:
        await self.db.execute("DELETE FROM control_flavors WHERE name = $1", name)

    # --- the catalogue -------------------------------------------------------
    async def lookup(self, project: str, queue: str) -> Placement | None:
        row = await self.db.fetchrow(
            "SELECT pool, state, target, source FROM control_catalogue "
            "WHERE project = $1 AND queue = $2", project, queue)
        return Placement(*row) if row else None

    async def place(self, project: str, queue: str, pool: str) -> Placement | None:
        async with self.db.acquire() as conn, conn.transaction():
            draining = await conn.fetchval(
                "SELECT draining FROM control_pools WHERE name = $1 FOR SHARE", pool)
            if not draining:
                await conn.execute(
                    "INSERT INTO control_catalogue (project, queue, pool) VALUES ($1, $2, $3) "
                    "ON CONFLICT (project, queue) DO NOTHING", project, queue, pool)
            row = await conn.fetchrow(
                "SELECT pool, state, target, source FROM control_catalogue "
                "WHERE project = $1 AND queue = $2", project, queue)
        return Placement(*row) if row else None

    async def set_state(self, project: str, queue: str, *, pool: str, expect: str,
                        state: str, target: str | None) -> bool:
        result = await self.db.execute(
            "UPDATE control_catalogue SET state = $5, target = $6 "
            "WHERE project = $1 AND queue = $2 AND pool = $3 AND state = $4",
            project, queue, pool, expect, state, target)
        return result == "UPDATE 1"

    async def finish_move(self, project: str, queue: str, *, source: str, target: str
                          ) -> bool:
        result = await self.db.execute(
            "UPDATE control_catalogue SET pool = $4, state = '', target = NULL, source = $3 "
            "WHERE project = $1 AND queue = $2 AND pool = $3 AND state = $5 AND target = $4",
            project, queue, source, target, MOVING)
        return result == "UPDATE 1"

    async def clear_source(self, project: str, queue: str, source: str) -> None:
        await self.db.execute(
            "UPDATE control_catalogue SET source = NULL "
            "WHERE project = $1 AND queue = $2 AND source = $3", project, queue, source)

    async def forget(self, project: str, queue: str) -> None:
        await self.db.execute(
            "DELETE FROM control_catalogue WHERE project = $1 AND queue = $2", project, queue)

    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        rows = await self.db.fetch(
            "SELECT project, queue FROM control_catalogue WHERE pool = $1 OR source = $1 "
            "ORDER BY project COLLATE \"C\", queue COLLATE \"C\" LIMIT $2", pool, limit)
        return [(r[0], r[1]) for r in rows]
