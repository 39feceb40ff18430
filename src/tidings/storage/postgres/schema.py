"""The PostgreSQL schema's upgrades, tracked in the schema_version table.

The statements themselves live in queries.py with every other one.
"""

from __future__ import annotations

import asyncpg

from tidings.storage.postgres import queries as q

VERSION = len(q.MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer Tidings than this one."""


class SchemaOutdated(RuntimeError):
    """The schema needs an upgrade that this process was told not to run."""


async def upgrade(conn: asyncpg.Connection, now: float) -> int:
    """Bring the schema to VERSION; returns the version found before.

    Everything happens in one transaction under an advisory lock: two
    processes starting at once take turns, and the second finds the work
    done. PostgreSQL's DDL is transactional, so a failed upgrade leaves the
    schema as it was.
    """
    async with conn.transaction():
        await conn.execute(q.SCHEMA_LOCK)
        await conn.execute(q.SCHEMA_VERSION_TABLE)
        found = await conn.fetchval(q.SCHEMA_VERSION)
        if found > VERSION:
            raise SchemaTooNew(
                f"the database schema is version {found}, newer than this Tidings ({VERSION})"
            )
        for version in range(found, VERSION):
            await conn.execute(q.MIGRATIONS[version])
            await conn.execute(q.SCHEMA_VERSION_INSERT, version + 1, now)
    return found


async def stored_version(conn: asyncpg.Connection) -> int:
    """The schema version the database holds (0 before the first upgrade)."""
    if await conn.fetchval(q.SCHEMA_VERSION_EXISTS):
        return await conn.fetchval(q.SCHEMA_VERSION)
    return 0


async def check(conn: asyncpg.Connection) -> int:
    """The schema version, refusing one this code cannot use (migrate=false)."""
    found = await stored_version(conn)
    if found > VERSION:
        raise SchemaTooNew(
            f"the database schema is version {found}, newer than this Tidings ({VERSION})"
        )
    if found < VERSION:
        raise SchemaOutdated(
            f"the database schema is version {found}, this Tidings needs {VERSION}: "
            "run `tidings migrate` (or drop migrate=false from the storage URL)"
        )
    return found
