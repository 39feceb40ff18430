"""The SQLite schema and its upgrades, tracked in PRAGMA user_version."""

from __future__ import annotations

import sqlite3

# Each entry upgrades the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE queues (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        UNIQUE (project, name)
    );
    -- AUTOINCREMENT: an id is never reused, so a marker never skips a
    -- message that takes the id of a deleted one.
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue_id INTEGER NOT NULL,
        body BLOB NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        available REAL NOT NULL,
        client_id TEXT NOT NULL,
        claim_id TEXT,
        claim_expires REAL NOT NULL DEFAULT 0,
        claim_count INTEGER NOT NULL DEFAULT 0
    );
    -- FIFO reads (listing, claiming) walk a queue in id order.
    CREATE INDEX messages_by_queue ON messages (queue_id, id);
    -- Garbage collection finds expired rows without a scan.
    CREATE INDEX messages_by_expiry ON messages (expires);
    CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
    CREATE TABLE claims (
        id TEXT PRIMARY KEY,
        queue_id INTEGER NOT NULL,
        ttl INTEGER NOT NULL,
        grace INTEGER NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX claims_by_expiry ON claims (expires);
    """,
    # Notifications: subscriptions and the delivery outbox.
    """
    -- A subscription belongs to (project, queue) by name: it needs no queue
    -- row. Public id: the row id and a random token, permuted (see
    -- storage/common/ids.py).
    -- created: when the ttl last started (creation, or an update's ttl).
    CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token INTEGER NOT NULL,
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        subscriber TEXT NOT NULL,
        ttl INTEGER NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        options TEXT NOT NULL,
        confirmed INTEGER NOT NULL
    );
    -- Duplicates, find, and the post's lookup of whom to notify.
    CREATE INDEX subscriptions_by_queue ON subscriptions (project, queue, subscriber);
    CREATE INDEX subscriptions_by_expiry ON subscriptions (expires);
    -- The outbox. kind: 0 message, 1 confirmation; status: 0 pending,
    -- 1 dead. A message delivery keeps the message's row id, ttl and body
    -- (payload), and rebuilds {"id", "body", "ttl"} when read; any other
    -- kind keeps its whole payload. due: when a pending delivery may be
    -- leased next (a lease moves it to the lease's end); when a dead one
    -- died (gc's retention counts from it).
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token INTEGER NOT NULL,
        subscription_id INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        message INTEGER,
        ttl INTEGER,
        payload BLOB NOT NULL,
        created REAL NOT NULL,
        due REAL NOT NULL,
        status INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    -- Leases walk pending ones by due time; gc finds old dead ones.
    CREATE INDEX deliveries_by_due ON deliveries (status, due);
    -- Listing, and dropping a subscription's deliveries.
    CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, status);
    """,
    # Opaque public ids (storage/common/ids.py): the key that permutes the
    # row ids, and for each table the first row id it numbers; ids issued
    # before (the plain row id) stay valid below it. sqlite_sequence holds
    # the highest id AUTOINCREMENT ever gave, deleted rows' included.
    # randomblob() draws from SQLite's CSPRNG, seeded by the OS.
    """
    CREATE TABLE id_scheme (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        key BLOB NOT NULL,
        messages_below INTEGER NOT NULL,
        subscriptions_below INTEGER NOT NULL,
        deliveries_below INTEGER NOT NULL
    );
    INSERT INTO id_scheme VALUES (
        1, randomblob(16),
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0) + 1,
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'subscriptions'), 0) + 1,
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0) + 1
    );
    """,
]

VERSION = len(MIGRATIONS)


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version the file holds (0 for a new file)."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def upgrade(conn: sqlite3.Connection) -> int:
    """Bring the schema to VERSION; returns the version found before.

    The version is read under the write lock, so server processes starting
    together on one file upgrade it once.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = stored_version(conn)
        if found > VERSION:
            raise RuntimeError(
                f"the database schema is version {found}, newer than this Tidings ({VERSION})"
            )
        for version in range(found, VERSION):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit first)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s.strip(" ;\n")]
