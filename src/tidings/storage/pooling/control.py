"""The control store of pooling: pools, flavors and the catalogue.

Zaqar keeps these in a "management store" apart from the messages: which
backends (pools) exist, how they are grouped (flavors), and on which pool
each queue lives (the catalogue). ``ControlDriver`` is the interface;
SQLite (below), Redis (control_redis.py) and PostgreSQL
(control_postgres.py) implement it, picked by URL scheme through
``CONTROL_DRIVERS``.

A catalogue entry is a ``Placement``: the queue's pool plus the state of a
move off it (see drain.py for the protocol). Every change of an entry that
the move protocol relies on is one atomic compare-and-set in the store, so
two processes never both win a race on the same queue.
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

from tidings.storage.common.opened import opened

# Placement states. STABLE: served by ``pool``. CLOSING: served by ``pool``
# but no new claims are granted (the move waits for the claims to end).
# MOVING: frozen while its data is copied to ``target``; requests wait.
STABLE = ""
CLOSING = "closing"
MOVING = "moving"
STATES = (STABLE, CLOSING, MOVING)


@dataclass(slots=True)
class PoolRecord:
    name: str
    uri: str
    weight: int
    flavor: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Set by a drain: no new queue is placed here. Kept by ``pool_upsert``.
    draining: bool = False


@dataclass(slots=True)
class FlavorRecord:
    name: str
    capabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Placement:
    """Where a queue lives, and how far a move of it has come."""

    pool: str
    state: str = STABLE
    # The pool a CLOSING or MOVING queue goes to.
    target: str | None = None
    # The pool a finished move left a copy on, until the drain deletes it.
    source: str | None = None

    @property
    def stable(self) -> bool:
        return self.state == STABLE


def encode_placement(placement: Placement) -> bytes:
    return msgspec.json.encode([placement.pool, placement.state, placement.target,
                                placement.source])


def decode_placement(raw: bytes | str) -> Placement:
    pool, state, target, source = msgspec.json.decode(raw)
    return Placement(pool, state, target, source)


class ControlDriver(ABC):
    """Pools, flavors and the catalogue (project, queue) -> placement."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # --- pools ---------------------------------------------------------------
    @abstractmethod
    async def pool_upsert(self, pool: PoolRecord) -> bool:
        """Create or replace (``draining`` is kept); True when the pool is new."""

    @abstractmethod
    async def pool_get(self, name: str) -> PoolRecord | None: ...

    @abstractmethod
    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        """Pools in name order, strictly after ``marker``."""

    @abstractmethod
    async def pool_delete(self, name: str) -> None: ...

    @abstractmethod
    async def pool_set_draining(self, name: str, draining: bool) -> None:
        """Mark the pool so ``place`` puts no new queue on it."""

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
    async def lookup(self, project: str, queue: str) -> Placement | None:
        """The placement of the queue, None when it is not placed."""

    @abstractmethod
    async def place(self, project: str, queue: str, pool: str) -> Placement | None:
        """Record the queue on ``pool`` unless it is placed already, and
        return its placement (another process may have placed it first).
        None when the queue is not placed and ``pool`` is draining: the
        check and the insert are one atomic step, so no queue lands on a
        pool after ``pool_set_draining`` returned."""

    @abstractmethod
    async def set_state(self, project: str, queue: str, *, pool: str, expect: str,
                        state: str, target: str | None) -> bool:
        """Compare-and-set: when the queue is on ``pool`` in state ``expect``,
        make it ``state`` toward ``target``; False (no change) otherwise."""

    @abstractmethod
    async def finish_move(self, project: str, queue: str, *, source: str, target: str
                          ) -> bool:
        """Compare-and-set: a MOVING queue on ``source`` toward ``target``
        becomes STABLE on ``target``, remembering ``source`` until
        ``clear_source``. False (no change) when it is not in that state."""

    @abstractmethod
    async def clear_source(self, project: str, queue: str, source: str) -> None:
        """The copy left on ``source`` is gone: forget it."""

    @abstractmethod
    async def forget(self, project: str, queue: str) -> None: ...

    @abstractmethod
    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(project, queue) pairs in order that live on ``pool`` or left a
        copy there (placement pool or source is ``pool``)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    weight INTEGER NOT NULL,
    flavor TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    draining INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flavors (
    name TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS catalogue (
    project TEXT NOT NULL,
    queue TEXT NOT NULL,
    pool TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '',
    target TEXT,
    source TEXT,
    PRIMARY KEY (project, queue)
);
CREATE INDEX IF NOT EXISTS catalogue_pool ON catalogue (pool);
"""

# Columns added since the first schema: (table, column, definition).
_ADDED_COLUMNS = (
    ("pools", "draining", "INTEGER NOT NULL DEFAULT 0"),
    ("catalogue", "state", "TEXT NOT NULL DEFAULT ''"),
    ("catalogue", "target", "TEXT"),
    ("catalogue", "source", "TEXT"),
)

_POOL_COLUMNS = "name, uri, weight, flavor, options, draining"


class SqliteControlDriver(ControlDriver):
    """One small SQLite file, shared by every server process (WAL mode).

    Each statement is a point read or write that autocommits, short enough
    to run on the event loop; SQLite's single writer makes each
    compare-and-set statement atomic across processes."""

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
        return opened(self._db, "control store")

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
        for table, column, definition in _ADDED_COLUMNS:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- pools ---------------------------------------------------------------
    @staticmethod
    def _pool(row: tuple[Any, ...]) -> PoolRecord:
        return PoolRecord(name=row[0], uri=row[1], weight=row[2], flavor=row[3],
                          options=msgspec.json.decode(row[4]), draining=bool(row[5]))

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
        row = self.db.execute(f"SELECT {_POOL_COLUMNS} FROM pools WHERE name = ?",
                              (name,)).fetchone()
        return self._pool(row) if row else None

    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        rows = self.db.execute(
            f"SELECT {_POOL_COLUMNS} FROM pools WHERE name > ? ORDER BY name LIMIT ?",
            (marker or "", -1 if limit is None else limit)).fetchall()
        return [self._pool(row) for row in rows]

    async def pool_delete(self, name: str) -> None:
        self.db.execute("DELETE FROM pools WHERE name = ?", (name,))

    async def pool_set_draining(self, name: str, draining: bool) -> None:
        self.db.execute("UPDATE pools SET draining = ? WHERE name = ?", (int(draining), name))

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
    async def lookup(self, project: str, queue: str) -> Placement | None:
        row = self.db.execute(
            "SELECT pool, state, target, source FROM catalogue WHERE project = ? AND queue = ?",
            (project, queue)).fetchone()
        return Placement(*row) if row else None

    async def place(self, project: str, queue: str, pool: str) -> Placement | None:
        # One statement: the draining check cannot interleave with a drain.
        self.db.execute(
            "INSERT OR IGNORE INTO catalogue (project, queue, pool) SELECT ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM pools WHERE name = ? AND draining)",
            (project, queue, pool, pool))
        return await self.lookup(project, queue)

    async def set_state(self, project: str, queue: str, *, pool: str, expect: str,
                        state: str, target: str | None) -> bool:
        cursor = self.db.execute(
            "UPDATE catalogue SET state = ?, target = ? "
            "WHERE project = ? AND queue = ? AND pool = ? AND state = ?",
            (state, target, project, queue, pool, expect))
        return cursor.rowcount == 1

    async def finish_move(self, project: str, queue: str, *, source: str, target: str
                          ) -> bool:
        cursor = self.db.execute(
            "UPDATE catalogue SET pool = ?, state = '', target = NULL, source = ? "
            "WHERE project = ? AND queue = ? AND pool = ? AND state = ? AND target = ?",
            (target, source, project, queue, source, MOVING, target))
        return cursor.rowcount == 1

    async def clear_source(self, project: str, queue: str, source: str) -> None:
        self.db.execute("UPDATE catalogue SET source = NULL "
                        "WHERE project = ? AND queue = ? AND source = ?",
                        (project, queue, source))

    async def forget(self, project: str, queue: str) -> None:
        self.db.execute("DELETE FROM catalogue WHERE project = ? AND queue = ?", (project, queue))

    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT project, queue FROM catalogue WHERE pool = ? OR source = ? "
            "ORDER BY project, queue LIMIT ?",
            (pool, pool, -1 if limit is None else limit)).fetchall()
        return [(r[0], r[1]) for r in rows]


# scheme -> "module:class" with a ``from_url(url)`` classmethod.
CONTROL_DRIVERS: dict[str, str] = {
    "sqlite": "tidings.storage.pooling.control:SqliteControlDriver",
    **dict.fromkeys(("redis", "rediss"),
                    "tidings.storage.pooling.control_redis:RedisControlDriver"),
    **dict.fromkeys(("postgres", "postgresql"),
                    "tidings.storage.pooling.control_postgres:PostgresControlDriver"),
}


def control_from_url(url: str) -> ControlDriver:
    scheme = urlsplit(url).scheme
    target = CONTROL_DRIVERS.get(scheme)
    if target is None:
        known = ", ".join(sorted(CONTROL_DRIVERS))
        raise ValueError(f"unsupported control store {url!r}; known schemes: {known}")
    module_name, _, cls = target.partition(":")
    return getattr(importlib.import_module(module_name), cls).from_url(url)


__all__ = ["CLOSING", "MOVING", "STABLE", "ControlDriver", "FlavorRecord", "Placement",
           "PoolRecord", "SqliteControlDriver", "control_from_url"]
