"""The control store of pooling: pools, flavors and the catalogue.

Zaqar keeps these in a "management store" apart from the messages: which
backends (pools) exist, how they are grouped (flavors), and on which pool
each queue lives (the catalogue). ``ControlDriver`` is the interface; the
SQLite implementation below is the only one so far. A Redis or PostgreSQL
control store implements the same methods (see ``CONTROL_DRIVERS``).
"""

from __future__ import annotations

import importlib
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec


@dataclass(slots=True)
class PoolRecord:
    name: str
    uri: str
    weight: int
    flavor: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FlavorRecord:
    name: str
    capabilities: dict[str, Any] = field(default_factory=dict)


class ControlDriver(ABC):
    """Pools, flavors and the catalogue (project, queue) -> pool."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # --- pools ---------------------------------------------------------------
    @abstractmethod
    async def pool_upsert(self, pool: PoolRecord) -> bool:
        """Create or replace; True when the pool is new."""

    @abstractmethod
    async def pool_get(self, name: str) -> PoolRecord | None: ...

    @abstractmethod
    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        """Pools in name order, strictly after ``marker``."""

    @abstractmethod
    async def pool_delete(self, name: str) -> None: ...

    # --- flavors -------------------------------------------------------------
    @abstractmethod
    async def flavor_upsert(self, flavor: FlavorRecord) -> bool: ...

    @abstractmethod
    async def flavor_get(self, name: str) -> FlavorRecord | None: ...

    @abstractmethod
    async def flavor_list(self, *, marker: str | None = None, limit: int | None = None
                          ) -> list[FlavorRecord]: ...

    @abstractmethod
    async def flavor_delete(self, name: str) -> None: ...

    # --- the catalogue -------------------------------------------------------
    @abstractmethod
    async def lookup(self, project: str, queue: str) -> str | None:
        """The pool of the queue, None when it is not placed."""

    @abstractmethod
    async def place(self, project: str, queue: str, pool: str) -> str:
        """Record the queue on ``pool`` unless it is placed already; returns
        the pool it is on (another process may have placed it first)."""

    @abstractmethod
    async def move(self, project: str, queue: str, pool: str) -> None:
        """Point the queue at another pool (draining)."""

    @abstractmethod
    async def forget(self, project: str, queue: str) -> None: ...

    @abstractmethod
    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(project, queue) pairs placed on ``pool``."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    weight INTEGER NOT NULL,
    flavor TEXT,
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS flavors (
    name TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS catalogue (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    pool TEXT NOT NULL,
    PRIMARY KEY (project, queue)
);
CREATE INDEX IF NOT EXISTS catalogue_pool ON catalogue (pool);
"""


class SqliteControlDriver(ControlDriver):
    """One small SQLite file, shared by every server process (WAL mode).

    Each statement is a point read or write that autocommits, short enough
    to run on the event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteControlDriver:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if path.startswith("/") and not parts.netloc:
            path = path[1:]  # sqlite:///rel -> rel ; sqlite:////abs -> /abs
        return cls(path or ":memory:")

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the control store is not open")
        return self._db

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- pools ---------------------------------------------------------------
    @staticmethod
    def _pool(row: tuple[Any, ...]) -> PoolRecord:
        return PoolRecord(name=row[0], uri=row[1], weight=row[2], flavor=row[3],
                          options=msgspec.json.decode(row[4]))

    async def pool_upsert(self, pool: PoolRecord) -> bool:
        existed = self.db.execute("SELECT 1 FROM pools WHERE name = ?", (pool.name,)).fetchone()
        self.db.execute(
            "INSERT INTO pools (name, uri, weight, flavor, options) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET uri = excluded.uri, weight = excluded.weight, "
            "flavor = excluded.flavor, options = excluded.options",
            (pool.name, pool.uri, pool.weight, pool.flavor,
             msgspec.json.encode(pool.options).decode()),
        )
        return existed is None

    async def pool_get(self, name: str) -> PoolRecord | None:
        row = self.db.execute("SELECT name, uri, weight, flavor, options FROM pools "
                              "WHERE name = ?", (name,)).fetchone()
        return self._pool(row) if row else None

    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        rows = self.db.execute(
            "SELECT name, uri, weight, flavor, options FROM pools WHERE name > ? "
            "ORDER BY name LIMIT ?", (marker or "", -1 if limit is None else limit)).fetchall()
        return [self._pool(row) for row in rows]

    async def pool_delete(self, name: str) -> None:
        self.db.execute("DELETE FROM pools WHERE name = ?", (name,))

    # --- flavors -------------------------------------------------------------
    async def flavor_upsert(self, flavor: FlavorRecord) -> bool:
        existed = self.db.execute("SELECT 1 FROM flavors WHERE name = ?",
                                  (flavor.name,)).fetchone()
        self.db.execute(
            "INSERT INTO flavors (name, capabilities) VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET capabilities = excluded.capabilities",
            (flavor.name, msgspec.json.encode(flavor.capabilities).decode()))
        return existed is None

    async def flavor_get(self, name: str) -> FlavorRecord | None:
        row = self.db.execute("SELECT name, capabilities FROM flavors WHERE name = ?",
                              (name,)).fetchone()
        return FlavorRecord(row[0], msgspec.json.decode(row[1])) if row else None

    async def flavor_list(self, *, marker: str | None = None, limit: int | None = None
                          ) -> list[FlavorRecord]:
        rows = self.db.execute(
            "SELECT name, capabilities FROM flavors WHERE name > ? ORDER BY name LIMIT ?",
            (marker or "", -1 if limit is None else limit)).fetchall()
        return [FlavorRecord(r[0], msgspec.json.decode(r[1])) for r in rows]

    async def flavor_delete(self, name: str) -> None:
        self.db.execute("DELETE FROM flavors WHERE name = ?", (name,))

    # --- the catalogue -------------------------------------------------------
    async def lookup(self, project: str, queue: str) -> str | None:
        row = self.db.execute("SELECT pool FROM catalogue WHERE project = ? AND queue = ?",
                              (project, queue)).fetchone()
        return row[0] if row else None

    async def place(self, project: str, queue: str, pool: str) -> str:
        self.db.execute("INSERT OR IGNORE INTO catalogue (project, queue, pool) VALUES (?, ?, ?)",
                        (project, queue, pool))
        placed = await self.lookup(project, queue)
        return placed or pool

    async def move(self, project: str, queue: str, pool: str) -> None:
        self.db.execute("INSERT INTO catalogue (project, queue, pool) VALUES (?, ?, ?) "
                        "ON CONFLICT (project, queue) DO UPDATE SET pool = excluded.pool",
                        (project, queue, pool))

    async def forget(self, project: str, queue: str) -> None:
        self.db.execute("DELETE FROM catalogue WHERE project = ? AND queue = ?", (project, queue))

    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT project, queue FROM catalogue WHERE pool = ? ORDER BY project, queue LIMIT ?",
            (pool, -1 if limit is None else limit)).fetchall()
        return [(r[0], r[1]) for r in rows]


# scheme -> "module:class" with a ``from_url(url)`` classmethod. Redis and
# PostgreSQL control stores would join here.
CONTROL_DRIVERS: dict[str, str] = {
    "sqlite": "tidings.storage.pooling.control:SqliteControlDriver",
}


def control_from_url(url: str) -> ControlDriver:
    scheme = urlsplit(url).scheme
    target = CONTROL_DRIVERS.get(scheme)
    if target is None:
        known = ", ".join(sorted(CONTROL_DRIVERS))
        raise ValueError(f"unsupported control store {url!r}; known schemes: {known}")
    module_name, _, cls = target.partition(":")
    return getattr(importlib.import_module(module_name), cls).from_url(url)


__all__ = ["ControlDriver", "FlavorRecord", "PoolRecord", "SqliteControlDriver",
           "control_from_url"]
