"""The PostgreSQL schema and its upgrades, tracked in the schema_version
table. The statements the operations run are in queries.py."""

from __future__ import annotations

import asyncpg

# Serialises concurrent migrations (two servers starting at once). The key
# is arbitrary but fixed: the first eight bytes of sha1("tidings.schema").
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(6158302154946373127)"
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version integer PRIMARY KEY, applied double precision NOT NULL)"
)
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"
SCHEMA_VERSION_EXISTS = "SELECT to_regclass('schema_version') IS NOT NULL"
SCHEMA_VERSION_INSERT = "INSERT INTO schema_version (version, applied) VALUES ($1, $2)"

# Each entry upgrades the schema from version i to i + 1, in one transaction.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE queues (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        -- COLLATE "C": names sort by code point, whatever the database locale.
        project text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        metadata bytea NOT NULL,
        metadata_filter jsonb NOT NULL DEFAULT '{}',
        created double precision NOT NULL,
        UNIQUE (project, name)
    );
    -- Identity ids are never reused, so a marker never skips a message that
    -- would take the id of a deleted one.
    CREATE TABLE messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue_id bigint NOT NULL,
        body bytea NOT NULL,
        created double precision NOT NULL,
        expires double precision NOT NULL,
        available double precision NOT NULL,
        client_id text NOT NULL,
        claim_id text,
        claim_expires double precision NOT NULL DEFAULT 0,
        claim_count integer NOT NULL DEFAULT 0
    );
    -- Listing and claiming walk one queue in id order: an index range scan
    -- that stops after LIMIT rows, however long the queue is.
    CREATE INDEX messages_by_queue ON messages (queue_id, id);
    -- Garbage collection finds expired rows without a scan.
    CREATE INDEX messages_by_expiry ON messages (expires);
    -- A claim's messages (get, renew, release) without a queue scan.
    CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
    CREATE TABLE claims (
        id text PRIMARY KEY,
        queue_id bigint NOT NULL,
        ttl integer NOT NULL,
        grace integer NOT NULL,
        created double precision NOT NULL,
        expires double precision NOT NULL
    );
    CREATE INDEX claims_by_queue ON claims (queue_id);
    CREATE INDEX claims_by_expiry ON claims (expires);
    """,
    # 2: notifications. Subscriptions name their queue by (project, name),
    # not by queue row: a subscription may come before its queue, and the
    # queue's row may be deleted and created again by posts.
    """
    CREATE TABLE subscriptions (
        -- The public id is seq (ordering: creation order, and a marker that
        -- no longer resolves still marks a place) plus a random token.
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token text NOT NULL,
        project text COLLATE "C" NOT NULL,
        queue text COLLATE "C" NOT NULL,
        subscriber text COLLATE "C" NOT NULL,
        ttl integer NOT NULL,
        options bytea NOT NULL,
        confirmed boolean NOT NULL,
        -- When the current lifetime began (creation, or the last new ttl):
        -- age counts from here and the subscription expires at started + ttl.
        started double precision NOT NULL,
        expires double precision NOT NULL
    );
    -- One row per subscriber of a queue, live or expired: the statements
    -- that would collide with an expired row (create, update) delete it
    -- first, so an expired duplicate never blocks. This index also finds a
    -- queue's subscriptions (its first two columns) for posts, cheaply
    -- when there are none.
    CREATE UNIQUE INDEX subscriptions_by_subscriber ON subscriptions (project, queue, subscriber);
    CREATE INDEX subscriptions_by_queue ON subscriptions (project, queue, seq);
    CREATE INDEX subscriptions_by_expiry ON subscriptions (expires);
    -- The outbox. No foreign key: deleting a subscription deletes its
    -- deliveries in the next statement of the same transaction.
    CREATE TABLE deliveries (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token text NOT NULL,
        subscription_seq bigint NOT NULL,
        project text COLLATE "C" NOT NULL,
        queue text COLLATE "C" NOT NULL,
        kind text NOT NULL,
        -- MESSAGE: the message's row id, body (as stored) and ttl;
        -- other kinds: the payload's JSON in body, message_id and ttl NULL.
        message_id bigint,
        body bytea NOT NULL,
        ttl integer,
        attempts integer NOT NULL DEFAULT 0,
        created double precision NOT NULL,
        -- PENDING: when the delivery is due; DEAD: when it died (gc's
        -- retention counts from there, through the same index).
        next_attempt double precision NOT NULL,
        lease_until double precision NOT NULL DEFAULT 0,
        status text NOT NULL DEFAULT 'pending',
        last_error text
    );
    -- Leasing walks due pending deliveries in due order (seq breaks ties).
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt, seq);
    CREATE INDEX deliveries_by_queue ON deliveries (project, queue, status, seq);
    CREATE INDEX deliveries_by_subscription ON deliveries (subscription_seq, status, seq);
    """,
    # 3: messages too large for a NOTIFY payload go through a table
    # (DataDriver.publish); rows older than a few minutes are removed by
    # the next large publish.
    """
    CREATE TABLE bus_messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        payload bytea NOT NULL,
        created timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 4: opaque public ids (storage/common/ids.py): the key that permutes
    # the sequence numbers, and for each table the first number it
    # numbers; ids issued before (the plain number) stay valid below it.
    # gen_random_uuid() draws from the server's strong random source.
    """
    CREATE TABLE id_scheme (
        one integer PRIMARY KEY CHECK (one = 1),
        key bytea NOT NULL,
        messages_below bigint NOT NULL,
        subscriptions_below bigint NOT NULL,
        deliveries_below bigint NOT NULL
    );
    INSERT INTO id_scheme VALUES (
        1, decode(replace(gen_random_uuid()::text, '-', ''), 'hex'),
        coalesce(pg_sequence_last_value(pg_get_serial_sequence('messages', 'id')::regclass),
                 0) + 1,
        coalesce(pg_sequence_last_value(pg_get_serial_sequence('subscriptions', 'seq')::regclass),
                 0) + 1,
        coalesce(pg_sequence_last_value(pg_get_serial_sequence('deliveries', 'seq')::regclass),
                 0) + 1
    );
    """,
    # 5: generated keys kept with the data (DataDriver.stored_secret).
    """
    CREATE TABLE secrets (
        name text PRIMARY KEY,
        value text NOT NULL,
        created double precision NOT NULL
    );
    """,
    # 6: until when (the database's clock, epoch seconds) a process watches
    # the queue: posts NOTIFY only until then (queries.py, "watch leases").
    # The queues already there count as watched for a minute, so that the
    # long polls waiting when the upgrade runs are still woken.
    """
    ALTER TABLE queues ADD COLUMN watched_until double precision NOT NULL DEFAULT 0;
    UPDATE queues SET watched_until = extract(epoch FROM now()) + 60;
    """,
]

VERSION = len(MIGRATIONS)


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
        await conn.execute(SCHEMA_LOCK)
        await conn.execute(SCHEMA_VERSION_TABLE)
        found = await conn.fetchval(SCHEMA_VERSION)
        if found > VERSION:
            raise SchemaTooNew(
                f"the database schema is version {found}, newer than this Tidings ({VERSION})"
            )
        for version in range(found, VERSION):
            await conn.execute(MIGRATIONS[version])
            await conn.execute(SCHEMA_VERSION_INSERT, version + 1, now)
    return found


async def stored_version(conn: asyncpg.Connection) -> int:
    """The schema version the database holds (0 before the first upgrade)."""
    if await conn.fetchval(SCHEMA_VERSION_EXISTS):
        return await conn.fetchval(SCHEMA_VERSION)
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
