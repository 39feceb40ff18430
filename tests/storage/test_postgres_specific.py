"""What only the PostgreSQL driver has: migrations, LISTEN/NOTIFY wake-ups,
behaviour when the server goes away, and plans that stay indexed.

The conformance suite covers the interface; these tests need a real
server (tests/support/pg_server.py) and skip without one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.storage.helpers import (
    CLIENT,
    claim,
    list_ids,
    list_messages,
    post,
)
from tests.support.clock import FakeClock
from tests.support.postgres_server import PostgresServer, new_server, shared_server
from tidings import errors
from tidings.storage.base import ClaimRequest, ClaimResult, NewMessage
from tidings.storage.postgres import queries as q
from tidings.storage.postgres import schema, writer
from tidings.storage.postgres.driver import PostgresDriver, redact
from tidings.storage.registry import driver_from_url


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The session's shared server (the conformance suite's too)."""
    return shared_server()


@pytest.fixture
def database(pg_server: PostgresServer) -> Iterator[str]:
    """A new, empty database of the shared server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name}")
    yield name
    pg_server.psql(f"DROP DATABASE {name} WITH (FORCE)")


def open_driver(url: str, clock: FakeClock | None = None) -> PostgresDriver:
    driver = driver_from_url(url, clock=clock or FakeClock())
    assert isinstance(driver, PostgresDriver)
    return driver


async def schema_versions(driver: PostgresDriver) -> list[int]:
    rows = await driver.fetch("SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows]


# --- URL ----------------------------------------------------------------------


def test_url_options_are_taken_and_the_rest_passed_on() -> None:
    driver = PostgresDriver.from_url(
        "postgresql://u:secret@db:6543/tid?max_size=4&min_size=0&connect_timeout=1.5"
        "&command_timeout=2&statement_timeout=3&migrate=false&notify=off&channel=jobs"
        "&sslmode=disable"
    )
    assert (driver.min_size, driver.max_size) == (0, 4)
    assert (driver.connect_timeout, driver.command_timeout, driver.statement_timeout) == (
        1.5, 2.0, 3.0)
    assert driver.deadline == 3.5
    assert (driver.migrate_on_open, driver.notify, driver.channel) == (False, False, "jobs")
    assert driver.dsn == "postgresql://u:secret@db:6543/tid?sslmode=disable"
    assert redact(driver.dsn) == "postgresql://u:***@db:6543/tid?sslmode=disable"


@pytest.mark.parametrize("query", ["max_size=0", "min_size=5&max_size=2", "migrate=maybe",
                                   "command_timeout=0", "connect_timeout=x", "channel="])
def test_bad_url_options_are_refused(query: str) -> None:
    with pytest.raises(ValueError):
        PostgresDriver.from_url(f"postgres://localhost/db?{query}")


def test_both_schemes_are_registered() -> None:
    for scheme in ("postgres", "postgresql"):
        assert isinstance(driver_from_url(f"{scheme}://localhost/db"), PostgresDriver)


# --- migrations ---------------------------------------------------------------


async def test_migrate_is_idempotent(pg_server: PostgresServer, database: str) -> None:
    driver = open_driver(pg_server.url(database))
    await driver.open()  # creates the schema
    try:
        assert await schema_versions(driver) == list(range(1, schema.VERSION + 1))
        assert await driver.migrate() == schema.VERSION
        assert await driver.migrate() == schema.VERSION
        assert await schema_versions(driver) == list(range(1, schema.VERSION + 1))
        await post(driver, "p", "q", 2)
    finally:
        await driver.close()
    # Reopening migrates again: nothing to do, nothing lost.
    driver = open_driver(pg_server.url(database))
    await driver.open()
    try:
        assert len(await list_ids(driver, "p", "q")) == 2
    finally:
        await driver.close()


async def test_concurrent_opens_migrate_once(pg_server: PostgresServer, database: str
                                             ) -> None:
    drivers = [open_driver(pg_server.url(database)) for _ in range(6)]
    try:
        await asyncio.gather(*(driver.open() for driver in drivers))
        assert await schema_versions(drivers[0]) == list(range(1, schema.VERSION + 1))
    finally:
        await asyncio.gather(*(driver.close() for driver in drivers))


def test_concurrent_migrate_processes(pg_server: PostgresServer, database: str
                                      ) -> None:
    """`tidings migrate` from several processes at once: all succeed."""
    url = pg_server.url(database)
    procs = [
        subprocess.Popen([sys.executable, "-m", "tidings", "migrate", "--storage", url],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, outputs
    versions = pg_server.psql("SELECT version FROM schema_version ORDER BY version",
                                    database=database)
    assert versions.split() == [str(v) for v in range(1, schema.VERSION + 1)]


def test_migrate_command_migrates_a_migrate_false_url(pg_server: PostgresServer,
                                                      database: str) -> None:
    """Servers run with migrate=false; `tidings migrate` on the same URL
    creates the schema they then accept."""
    url = pg_server.url(database, migrate="false")
    done = subprocess.run([sys.executable, "-m", "tidings", "migrate", "--storage", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    versions = pg_server.psql("SELECT version FROM schema_version ORDER BY version",
                              database=database)
    assert versions.split() == [str(v) for v in range(1, schema.VERSION + 1)]


async def test_migrate_false_refuses_an_outdated_schema(pg_server: PostgresServer,
                                                        database: str) -> None:
    driver = open_driver(pg_server.url(database, migrate="false"))
    with pytest.raises(schema.SchemaOutdated, match="tidings migrate"):
        await driver.open()
    assert pg_server.psql("SELECT to_regclass('messages') IS NULL", database=database
                                ).strip() == "t"


async def test_schema_newer_than_the_code_is_refused(pg_server: PostgresServer,
                                                     database: str) -> None:
    driver = open_driver(pg_server.url(database))
    await driver.open()
    await driver.execute(schema.SCHEMA_VERSION_INSERT, schema.VERSION + 1, 0.0)
    await driver.close()
    for options in ({}, {"migrate": "false"}):
        with pytest.raises(schema.SchemaTooNew):
            await open_driver(pg_server.url(database, **options)).open()


async def test_ids_issued_before_opaque_ids_keep_working(pg_server: PostgresServer,
                                                        database: str) -> None:
    """A database at schema 3 (plain sequence ids) migrates to opaque ids:
    its message keeps its plain id, found and paged by it; new messages get
    opaque ids; a plain id past the old rows names nothing."""
    statements = [schema.SCHEMA_VERSION_TABLE, *schema.MIGRATIONS[:3]]
    statements += [f"INSERT INTO schema_version VALUES ({v}, 0)" for v in (1, 2, 3)]
    statements += [
        "INSERT INTO queues (project, name, metadata, created) VALUES ('p', 'q', '{}', 0)",
        "INSERT INTO messages (queue_id, body, created, expires, available, client_id) "
        "VALUES (1, '\\x7b226f6c64223a317d', 0, 1e12, 0, 'c'),"
        " (1, '\\x7b226f6c64223a327d', 0, 1e12, 0, 'c')",
        "DELETE FROM messages WHERE id = 2",  # the sequence remembers it
    ]
    pg_server.psql(";".join(statements), database=database)
    driver = open_driver(pg_server.url(database), FakeClock(start=1000.0))
    await driver.open()
    try:
        old = "0000000000000001"
        assert (await driver.messages.get("p", "q", old)).body == {"old": 1}
        [new] = await post(driver, "p", "q")
        assert len(new) == 32
        assert await list_ids(driver, "p", "q", echo=True) == [old, new]
        assert await list_ids(driver, "p", "q", echo=True, marker=old) == [new]
        with pytest.raises(errors.MessageDoesNotExist):
            await driver.messages.get("p", "q", "0000000000000003")
    finally:
        await driver.close()


# --- ordering ------------------------------------------------------------------


async def test_a_later_post_waits_for_an_earlier_uncommitted_one(
    pg_server: PostgresServer, database: str,
    two_drivers: tuple[PostgresDriver, PostgresDriver],
) -> None:
    """Ids come from one sequence, so without care a post that drew its ids
    first could commit last, and an observer whose marker already passed
    them would never see its messages. A post holds its queue's row lock
    until it commits, so the next post to that queue waits, and ids become
    visible in order."""
    import asyncpg

    driver, _ = two_drivers
    await post(driver, "p", "q")  # the queue exists
    slow = await asyncpg.connect(pg_server.url(database))
    try:
        transaction = slow.transaction()
        await transaction.start()
        # The first post draws its id, then stalls before committing.
        [first] = await slow.fetch(q.MESSAGES_POST, ["p"], ["q"], [None], driver.clock(), [1],
                                   [CLIENT], [b'"first"'], [3600], [0], None)
        second = asyncio.create_task(post(driver, "p", "q", body="second"))
        other_queue = await post(driver, "p", "elsewhere")  # other queues do not wait
        await asyncio.sleep(0.3)
        assert not second.done()
        page, marker = await list_messages(driver, "p", "q", limit=10)
        assert len(page) == 1  # only the message posted before the test began
        await transaction.commit()
        [second_id] = await asyncio.wait_for(second, 5)
        later, _ = await list_messages(driver, "p", "q", marker=marker)
        assert [m.body for m in later] == ["first", "second"]
        assert later[1].id == second_id and other_queue
    finally:
        await slow.close()


# --- LISTEN/NOTIFY ----------------------------------------------------------


@pytest.fixture
async def two_drivers(pg_server: PostgresServer, database: str
                      ) -> AsyncIterator[tuple[PostgresDriver, PostgresDriver]]:
    """Two drivers on one database, as two server processes would be."""
    first = open_driver(pg_server.url(database))
    second = open_driver(pg_server.url(database, migrate="false"))
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_a_stored_secret_is_shared_by_every_process(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    # INSERT ... ON CONFLICT DO NOTHING, then read back: one key wins.
    first, second = two_drivers
    keys = await asyncio.gather(first.stored_secret("signed-urls"),
                                second.stored_secret("signed-urls"))
    assert keys[0] == keys[1] and len(keys[0]) == 64


async def test_post_notifies_subscribers(two_drivers: tuple[PostgresDriver, PostgresDriver]
                                         ) -> None:
    listening, posting = two_drivers
    heard: asyncio.Queue[tuple[str | None, str | None]] = asyncio.Queue()

    async def on_post(project: str | None, queue: str | None) -> None:
        await heard.put((project, queue))

    subscription = await listening.subscribe(on_post)
    await posting.messages.post("team/a", "jobs", [NewMessage(body=1, ttl=60)], CLIENT)
    assert await asyncio.wait_for(heard.get(), 5) == ("team/a", "jobs")

    # A plain function works too, and a batch is announced once.
    plain: list[tuple[str | None, str | None]] = []
    async with await listening.subscribe(lambda p, q: plain.append((p, q))):
        await posting.messages.post("p", "q", [NewMessage(body=i, ttl=60) for i in range(3)],
                                    CLIENT)
        assert await asyncio.wait_for(heard.get(), 5) == ("p", "q")
        assert plain == [("p", "q")]

    await subscription.close()
    await posting.messages.post("p", "q", [NewMessage(body=1, ttl=60)], CLIENT)
    await asyncio.sleep(0.3)
    assert heard.empty() and plain == [("p", "q")]


async def test_notify_false_posts_silently(pg_server: PostgresServer, database: str,
                                           two_drivers: tuple[PostgresDriver, PostgresDriver]
                                           ) -> None:
    listening, _ = two_drivers
    quiet = open_driver(pg_server.url(database, notify="false"))
    await quiet.open()
    try:
        heard: list[tuple[str | None, str | None]] = []
        await listening.subscribe(lambda p, q: heard.append((p, q)))
        await post(quiet, "p", "q")
        await asyncio.sleep(0.3)
        assert heard == []
        assert len(await list_ids(listening, "p", "q")) == 1
    finally:
        await quiet.close()


# --- watch leases: posts NOTIFY only the queues a process watches -----------------


async def _lease_over(driver: PostgresDriver, project: str, queue: str) -> None:
    """The queue as long after every lease on it ended (a new queue's too)."""
    await driver.execute("UPDATE queues SET watched_until = 0 WHERE project = $1 AND name = $2",
                         project, queue)


async def test_a_post_to_a_queue_nobody_watches_sends_no_notify(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    watching, posting = two_drivers
    heard: list[tuple[str | None, str | None]] = []
    async with await watching.subscribe(lambda p, q: heard.append((p, q))):
        await post(posting, "p", "q")  # a new queue counts as watched for a moment
        await _lease_over(posting, "p", "q")
        await post(posting, "p", "q")
        await asyncio.sleep(0.3)
        assert heard == [("p", "q")]
        # Another process watches it: its posts NOTIFY again, and wake it.
        async with watching.watch("p", "q") as watch:
            await post(posting, "p", "q")
            assert await watch.wait(5) is True
        assert heard == [("p", "q"), ("p", "q")]
    assert len(await list_ids(watching, "p", "q")) == 3


async def test_a_watch_of_a_missing_queue_wakes_when_another_process_creates_it(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    watching, posting = two_drivers
    async with watching.watch("p", "later") as watch:
        waiter = asyncio.ensure_future(watch.wait(30))
        await post(posting, "p", "later")
        assert await asyncio.wait_for(waiter, 5) is True


async def test_a_long_wait_renews_its_lease(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    watching, posting = two_drivers
    watching.watch_leases.lease_seconds = 1.0  # renewed every half second
    await post(posting, "p", "q")
    await _lease_over(posting, "p", "q")
    async with watching.watch("p", "q") as watch:
        waiter = asyncio.ensure_future(watch.wait(30))
        await asyncio.sleep(2.5)  # the first lease alone would be over
        assert not waiter.done()
        await post(posting, "p", "q")
        assert await asyncio.wait_for(waiter, 5) is True


async def test_a_lease_found_lapsed_wakes_the_watch(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """A lease can lapse under a waiting watch (the queue deleted and
    created again, a stalled process): a post may then have gone without
    a NOTIFY, so the next renewal wakes the watch to read again."""
    watching, posting = two_drivers
    watching.watch_leases.lease_seconds = 1.0
    await post(posting, "p", "q")
    async with watching.watch("p", "q") as watch:
        waiter = asyncio.ensure_future(watch.wait(30))
        await _lease_over(posting, "p", "q")
        await post(posting, "p", "q")
        assert await asyncio.wait_for(waiter, 3) is True


# --- the server goes away ------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, free to be killed."""
    server = new_server()
    yield server
    server.destroy()


async def test_server_crash_gives_service_unavailable_then_recovers(
    own_server: PostgresServer,
) -> None:
    clock = FakeClock()
    driver = open_driver(own_server.url(connect_timeout=2, command_timeout=3), clock)
    await driver.open()
    try:
        posted = await post(driver, "p", "q", 3)
        # Deleted without a claim, so kept apart from the queue the operations
        # claim from: a claim landing on one of them just before the crash
        # would make the delete after recovery rightly refuse.
        unclaimed = await post(driver, "p", "unclaimed", 3)
        heard: asyncio.Queue[tuple[str | None, str | None]] = asyncio.Queue()
        await driver.subscribe(lambda p, q: heard.put_nowait((p, q)))

        operations = [
            lambda: post(driver, "p", "q"),
            lambda: list_ids(driver, "p", "q"),
            lambda: claim(driver, "p", "q", limit=1),
            lambda: driver.messages.get("p", "q", posted[0]),
            lambda: driver.messages.bulk_delete("p", "unclaimed", unclaimed[2:], None),
            lambda: driver.queues.stats("p", "q"),
            lambda: driver.queues.create("p", "other", {}),
            lambda: driver.gc(),
        ]

        # Requests in flight while the server dies: each succeeds or fails
        # with ServiceUnavailable, nothing else.
        stopped = asyncio.Event()

        async def hammer() -> list[BaseException | None]:
            outcomes: list[BaseException | None] = []
            for op in itertools.cycle(operations):
                if stopped.is_set() and len(outcomes) > len(operations):
                    return outcomes
                try:
                    await op()
                    outcomes.append(None)
                except BaseException as exc:  # noqa: BLE001 - we check the type below
                    outcomes.append(exc)
            raise AssertionError("unreachable")

        in_flight = [asyncio.create_task(hammer()) for _ in range(3)]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(own_server.stop, "immediate")
        stopped.set()
        outcomes = [o for task in in_flight for o in await asyncio.wait_for(task, 60)]
        for outcome in outcomes:
            assert outcome is None or isinstance(outcome, errors.ServiceUnavailable), outcome
        assert None in outcomes and any(o is not None for o in outcomes)

        for op in operations:
            started = time.monotonic()
            with pytest.raises(errors.ServiceUnavailable) as raised:
                await op()
            assert time.monotonic() - started < driver.deadline + 1
            assert "PostgreSQL" in raised.value.description
        assert await driver.is_alive() is False
        assert (await driver.health())["storage_reachable"] is False

        await asyncio.to_thread(own_server.start)
        # The same driver, never reopened: the pool replaced its connections.
        assert await driver.is_alive() is True
        for op in operations:
            await op()
        assert posted[0] in await list_ids(driver, "p", "q", include_claimed=True)
        assert (await driver.health())["storage_reachable"] is True

        # The listener reconnected by itself and says so, then hears posts again.
        deadline = time.monotonic() + 15
        seen: set[tuple[str | None, str | None]] = set()
        while (None, None) not in seen and time.monotonic() < deadline:
            seen.add(await asyncio.wait_for(heard.get(), 15))
        assert (None, None) in seen
        # A notice of the posts above may still be on its way: wait for
        # this post's own, whatever arrives before it.
        await post(driver, "p", "after")
        deadline = time.monotonic() + 5
        while (got := await asyncio.wait_for(heard.get(), 5)) != ("p", "after"):
            assert time.monotonic() < deadline, got
    finally:
        await driver.close()


def _server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its children (from /proc: no procps needed)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The parent pid is the 2nd field after the ")" closing the name.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


async def test_unresponsive_server_times_out_instead_of_hanging(
    own_server: PostgresServer,
) -> None:
    """A server that accepts but never answers (SIGSTOP: like a hung host):
    every operation fails within the deadline, and works once it resumes."""
    driver = open_driver(own_server.url(connect_timeout=1, command_timeout=1, max_size=3))
    await driver.open()
    pids = _server_pids(own_server)
    try:
        await post(driver, "p", "q", 2)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        operations = [
            lambda: post(driver, "p", "q"),
            lambda: claim(driver, "p", "q"),
            lambda: driver.queues.delete("p", "q"),
            lambda: list_ids(driver, "p", "q"),
        ]
        for op in operations:
            started = time.monotonic()
            with pytest.raises(errors.ServiceUnavailable):
                await op()
            assert time.monotonic() - started < driver.deadline + 0.5
        assert await driver.is_alive() is False
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    try:
        recovered = False
        for _ in range(50):  # connections broken by the timeouts are replaced
            try:
                await post(driver, "p", "q")
                recovered = True
                break
            except errors.ServiceUnavailable:
                await asyncio.sleep(0.1)
        assert recovered
        assert len(await list_ids(driver, "p", "q")) >= 3
    finally:
        await driver.close()


async def test_open_against_a_stopped_server_is_service_unavailable(
    own_server: PostgresServer,
) -> None:
    own_server.stop("immediate")
    driver = open_driver(own_server.url(connect_timeout=1, command_timeout=1))
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable):
        await driver.open()
    assert time.monotonic() - started < driver.deadline + 1


async def test_nul_in_a_name_is_a_validation_error(
    two_drivers: tuple[PostgresDriver, PostgresDriver],
) -> None:
    """PostgreSQL text cannot hold NUL: a bad request, not a backend failure."""
    driver, _ = two_drivers
    with pytest.raises(errors.ValidationFailed):
        await post(driver, "a\x00b", "q")
    # Bodies and metadata are bytes and keep it.
    await driver.queues.create("p", "q", {"k\x00": "v\x00"})
    assert await driver.queues.get_metadata("p", "q") == {"k\x00": "v\x00"}


# --- health and plans ---------------------------------------------------------


async def test_health_reports_counts_per_queue(two_drivers: tuple[PostgresDriver, PostgresDriver]
                                               ) -> None:
    driver, _ = two_drivers
    await post(driver, "p", "a", 2)
    await post(driver, "p", "b", 1)
    await driver.queues.create("p", "empty", {})
    details = await driver.health()
    assert details["storage_reachable"] is True
    assert details["message_counts"] == [
        {"project": "p", "queue": "a", "messages": 2},
        {"project": "p", "queue": "b", "messages": 1},
        {"project": "p", "queue": "empty", "messages": 0},
    ]
    assert "***" not in details["url"] and details["pool"]["max_size"] >= 1


async def test_big_queue_is_read_and_claimed_through_indexes(
    two_drivers: tuple[PostgresDriver, PostgresDriver],
) -> None:
    """With many messages, listing, claiming, popping and gc use an index
    rather than scanning the queue."""
    driver, _ = two_drivers
    clock = driver.clock
    await post(driver, "p", "big")
    await post(driver, "p", "small")
    # Bulk load straight into the table: 200k messages in well under a second.
    await driver.execute(
        "INSERT INTO messages (queue_id, body, created, expires, available, client_id) "
        "SELECT (SELECT id FROM queues WHERE name = 'big'), '1'::bytea, $1::float8, "
        "$1::float8 + 3600, $1::float8, 'c' FROM generate_series(1, 200000)", clock())
    await driver.execute("ANALYZE messages")

    async def plan(sql: str, *args: object) -> str:
        rows = await driver.fetch("EXPLAIN " + sql, *args)
        return "\n".join(row[0] for row in rows)

    now = clock()
    plans = {
        "page": await plan(q.MESSAGE_PAGE, "p", "big", 0, now, False, False, None, 20),
        "claim": await plan(q.CLAIMS_CREATE, ["p", "p"], ["big", "small"], now, [1, 2],
                            ["c", "d"], [10, 10], [now + 60] * 2, [now + 120] * 2, [60] * 2,
                            [60] * 2, [now] * 2),
        "pop": await plan(q.MESSAGES_POP, "p", "big", now, 10),
        "gc": await plan(q.GC_EXPIRED_MESSAGES, now, 5000),
        "get": await plan(q.MESSAGES_GET, [1, 2], now, "p", "big"),
    }
    for name, text in plans.items():
        assert "Seq Scan on messages" not in text, f"{name}:\n{text}"


# --- group commit and the metadata cache -----------------------------------------


async def _transactions_of(driver: PostgresDriver, ids: list[str]) -> list[int]:
    """The id of the transaction that wrote each message (its row's xmin)."""
    rowids = [driver.ids.parse_message_id(message_id) for message_id in ids]
    rows = await driver.fetch(
        "SELECT id, xmin::text::bigint FROM messages WHERE id = ANY($1::bigint[])", rowids)
    written = dict(rows)
    return [written[rowid] for rowid in rowids]


async def test_concurrent_posts_to_a_queue_share_one_transaction(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Posts that wait together share one statement (one transaction), each
    still answered with its own ids, in order."""
    driver, _ = two_drivers
    answers = await asyncio.gather(*(
        driver.messages.post("p", "q", [NewMessage(body=[i, j], ttl=60) for j in range(i + 1)],
                             CLIENT)
        for i in range(5)))
    assert [len(ids) for ids in answers] == [1, 2, 3, 4, 5]
    transactions = {xid for ids in answers for xid in await _transactions_of(driver, ids)}
    assert len(transactions) == 1
    page, _ = await list_messages(driver, "p", "q", limit=20)
    assert [m.id for m in page] == [i for ids in answers for i in ids]
    assert [m.body for m in page] == [[i, j] for i in range(5) for j in range(i + 1)]


async def test_one_failing_post_of_a_group_leaves_the_others_posted(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """A statement fails as a whole: the group's posts then run alone, so
    the one PostgreSQL refuses (a NUL in its client id) fails by itself."""
    driver, _ = two_drivers
    clients = [CLIENT, CLIENT, "bad\x00client", CLIENT, CLIENT]
    answers = await asyncio.gather(*(
        driver.messages.post("p", "q", [NewMessage(body=i, ttl=60)], client)
        for i, client in enumerate(clients)), return_exceptions=True)
    assert isinstance(answers[2], errors.ValidationFailed)
    page, _ = await list_messages(driver, "p", "q", limit=20)
    assert [m.body for m in page] == [0, 1, 3, 4]
    assert [m.id for m in page] == [ids[0] for ids in answers if isinstance(ids, list)]


async def test_posts_to_several_queues_at_once_share_one_transaction(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Posts to different queues that are ready together go out in one
    statement (one COMMIT), each queue's messages in order under its own
    ids; a queue that did not exist yet is created and posted to."""
    driver, _ = two_drivers
    for queue in ("a", "b"):
        await post(driver, "p", queue)  # these exist; "new" does not
    queues = ["a", "b", "new", "a", "b"]
    answers = await asyncio.gather(*(
        driver.messages.post("p", queue, [NewMessage(body=[queue, i, j], ttl=60)
                                          for j in range(2)], CLIENT)
        for i, queue in enumerate(queues)))
    existing = [ids for queue, ids in zip(queues, answers, strict=True) if queue != "new"]
    assert len({xid for ids in existing for xid in await _transactions_of(driver, ids)}) == 1
    for queue in ("a", "b", "new"):
        page, _ = await list_messages(driver, "p", queue, limit=20)
        mine = [(i, ids) for i, (name, ids) in enumerate(zip(queues, answers, strict=True))
                if name == queue]
        assert [m.body for m in page][-2 * len(mine):] == [
            [queue, i, j] for i, _ in mine for j in range(2)]
        assert [m.id for m in page][-2 * len(mine):] == [x for _, ids in mine for x in ids]


async def test_a_locked_queue_does_not_hold_up_the_queues_posted_with_it(
        pg_server: PostgresServer, database: str,
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Another transaction holds queue a's row (another process's post, a
    queue being deleted): posts to a and b ready together, b's is
    committed at once and a's waits for the lock on its own."""
    import asyncpg

    driver, _ = two_drivers
    for queue in ("a", "b"):
        await post(driver, "p", queue)
    holder = await asyncpg.connect(pg_server.url(database))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.fetchval(q.QUEUE_LOCK, "p", "a")
        to_a = asyncio.ensure_future(post(driver, "p", "a", body="to a"))
        [to_b] = await asyncio.wait_for(post(driver, "p", "b", body="to b"), 10)
        again_b = await asyncio.wait_for(post(driver, "p", "b", body="b again"), 10)
        assert not to_a.done()
        await transaction.commit()
        [a_id] = await asyncio.wait_for(to_a, 10)
    finally:
        await holder.close()
    page_a, _ = await list_messages(driver, "p", "a", limit=20)
    page_b, _ = await list_messages(driver, "p", "b", limit=20)
    assert [m.id for m in page_a][-1] == a_id and page_a[-1].body == "to a"
    assert [m.id for m in page_b][-2:] == [to_b, *again_b]


async def _lock_waits(driver: PostgresDriver, count: int) -> None:
    """Until ``count`` statements of the database wait for a row lock."""
    for _ in range(2000):
        waiting = await driver.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'")
        if waiting >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{count} statements never waited for a lock")


async def _hold(url: str, queue: str) -> tuple[Any, Any]:
    """Another transaction holding the row of queue ``queue`` of project p."""
    import asyncpg

    holder = await asyncpg.connect(url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.fetchval(q.QUEUE_LOCK, "p", queue)
    return holder, transaction


async def test_queues_held_by_another_process_wait_for_it_together(
        pg_server: PostgresServer, database: str, monkeypatch: pytest.MonkeyPatch,
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """The posts of queues another transaction holds (the other server
    process's post) wait for them in one statement, not one statement per
    queue: one transaction once the holder commits, each post still in
    order under its own ids."""
    # A wait long enough for a loaded machine (the lane's own is shorter).
    monkeypatch.setattr(writer, "MESSAGES_POST_WAITING", q.messages_post_waiting(20_000))
    driver, _ = two_drivers
    queues = ("a", "b", "c")
    for queue in queues:
        await post(driver, "p", queue)
    holder, transaction = await _hold(pg_server.url(database), "a")
    try:
        await holder.fetchval(q.QUEUE_LOCK, "p", "b")
        await holder.fetchval(q.QUEUE_LOCK, "p", "c")
        posts = [asyncio.ensure_future(post(driver, "p", queue, body=f"to {queue}"))
                 for queue in queues]
        await _lock_waits(driver, 1)
        assert not any(task.done() for task in posts)
        await transaction.commit()
        answers = [await asyncio.wait_for(task, 10) for task in posts]
    finally:
        await holder.close()
    assert len({xid for ids in answers for xid in await _transactions_of(driver, ids)}) == 1
    for queue, ids in zip(queues, answers, strict=True):
        page, _ = await list_messages(driver, "p", queue, limit=20)
        assert [(m.id, m.body) for m in page][-1] == (ids[0], f"to {queue}")


async def test_a_queue_held_past_the_wait_goes_on_its_own(
        pg_server: PostgresServer, database: str, monkeypatch: pytest.MonkeyPatch,
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """The statement of the held queues waits a bounded time: a queue held
    for long (being deleted or purged) then waits on its own, and the
    queues that waited with it are posted as soon as they are free."""
    monkeypatch.setattr(writer, "MESSAGES_POST_WAITING", q.messages_post_waiting(50))
    driver, _ = two_drivers
    for queue in ("a", "b"):
        await post(driver, "p", queue)
    long_holder, long_transaction = await _hold(pg_server.url(database), "a")
    short_holder, short_transaction = await _hold(pg_server.url(database), "b")
    try:
        to_a = asyncio.ensure_future(post(driver, "p", "a", body="to a"))
        to_b = asyncio.ensure_future(post(driver, "p", "b", body="to b"))
        # Past the bounded wait, each waits on its own: two lock waits.
        await _lock_waits(driver, 2)
        await short_transaction.commit()
        [b_id] = await asyncio.wait_for(to_b, 10)
        assert not to_a.done()
        await long_transaction.commit()
        [a_id] = await asyncio.wait_for(to_a, 10)
    finally:
        await long_holder.close()
        await short_holder.close()
    for queue, message_id in (("a", a_id), ("b", b_id)):
        page, _ = await list_messages(driver, "p", queue, limit=20)
        assert [(m.id, m.body) for m in page][-1] == (message_id, f"to {queue}")


async def test_two_processes_posting_to_the_same_queues_lose_nothing(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Two servers posting to the same queues at once hold each other's
    queues in turn (their statements take several queue rows, in id
    order): every post is answered, no deadlock, and each queue holds
    every message once, each process's in the order it posted them."""
    queues = [f"q{i}" for i in range(6)]
    for queue in queues:
        await post(two_drivers[0], "p", queue)

    async def producer(driver: PostgresDriver, name: str) -> list[tuple[str, list[str]]]:
        sent: list[tuple[str, list[str]]] = []

        async def one(worker: int) -> None:
            for i in range(12):
                queue = queues[(worker + i) % len(queues)]
                ids = await driver.messages.post(
                    "p", queue, [NewMessage(body=[name, worker, i], ttl=60)], CLIENT)
                sent.append((queue, ids))

        await asyncio.gather(*(one(worker) for worker in range(8)))
        return sent

    results = await asyncio.wait_for(asyncio.gather(
        producer(two_drivers[0], "A"), producer(two_drivers[1], "B")), 60)
    posted: dict[str, list[str]] = {queue: [] for queue in queues}
    for sent in results:
        for queue, ids in sent:
            posted[queue] += ids
    for queue in queues:
        page, _ = await list_messages(two_drivers[0], "p", queue, limit=100)
        stored = [m for m in page if isinstance(m.body, list)]
        assert sorted(m.id for m in stored) == sorted(posted[queue])
        for name in ("A", "B"):
            for worker in range(8):
                mine = [m.body[2] for m in stored if m.body[:2] == [name, worker]]
                assert mine == sorted(mine)


async def test_one_failing_post_among_several_queues_fails_alone(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """A statement for several queues fails as a whole: each queue's posts
    then go on their own, then each post, so only the refused one fails."""
    driver, _ = two_drivers
    for queue in ("a", "b", "c"):
        await post(driver, "p", queue)
    posts = [("a", CLIENT), ("b", "bad\x00client"), ("b", CLIENT), ("c", CLIENT)]
    answers = await asyncio.gather(*(
        driver.messages.post("p", queue, [NewMessage(body=i, ttl=60)], client)
        for i, (queue, client) in enumerate(posts)), return_exceptions=True)
    assert isinstance(answers[1], errors.ValidationFailed)
    for queue, expected in (("a", [0]), ("b", [2]), ("c", [3])):
        page, _ = await list_messages(driver, "p", queue, limit=20)
        assert [m.body for m in page][1:] == expected


async def test_concurrent_deletes_share_a_statement_and_each_gets_its_answer(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Single deletes of one queue go together; a message the group's
    statement may not delete (claimed, or claimed by another claim) is
    refused alone, and the others are gone."""
    driver, _ = two_drivers
    free = await post(driver, "p", "q", 2)
    claim_id, claimed = await claim(driver, "p", "q", limit=1)
    assert claim_id is not None
    claimed_ids = [m.id for m in claimed]
    free = [i for i in free if i not in claimed_ids]
    more = await post(driver, "p", "q", 2)
    outcomes = await asyncio.gather(
        driver.messages.delete("p", "q", free[0], None),
        driver.messages.delete("p", "q", claimed_ids[0], None),  # claimed: refused
        driver.messages.delete("p", "q", more[0], None),
        driver.messages.delete("p", "q", more[1], "0" * 24),  # not claimed: refused
        driver.messages.delete("p", "q", "0000000000000003", None),  # never was: no error
        return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None and outcomes[4] is None
    assert isinstance(outcomes[1], errors.MessageIsClaimed)
    assert isinstance(outcomes[3], errors.MessageNotClaimed)
    assert await list_ids(driver, "p", "q", echo=True, include_claimed=True) == [
        claimed_ids[0], more[1]]
    await driver.messages.delete("p", "q", claimed_ids[0], claim_id)
    assert await list_ids(driver, "p", "q", echo=True, include_claimed=True) == [more[1]]


async def test_deletes_of_several_queues_at_once_each_get_their_answer(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Single deletes of different queues go out together: each message
    that may go is gone, a claimed one is refused, an id of another queue
    deletes nothing there."""
    driver, _ = two_drivers
    a = await post(driver, "p", "a", 3)
    b = await post(driver, "p", "b", 3)
    claim_id, claimed = await claim(driver, "p", "b", limit=1)
    assert claim_id is not None and [m.id for m in claimed] == b[:1]
    outcomes = await asyncio.gather(
        driver.messages.delete("p", "a", a[0], None),
        driver.messages.delete("p", "b", b[0], None),  # claimed: refused
        driver.messages.delete("p", "b", b[1], None),
        driver.messages.delete("p", "a", b[2], None),  # b's message, named in a: nothing
        driver.messages.delete("p", "a", a[2], None),
        return_exceptions=True)
    assert isinstance(outcomes[1], errors.MessageIsClaimed)
    assert [outcome for n, outcome in enumerate(outcomes) if n != 1] == [None] * 4
    assert await list_ids(driver, "p", "a", echo=True, include_claimed=True) == [a[1]]
    assert await list_ids(driver, "p", "b", echo=True, include_claimed=True) == [b[0], b[2]]


async def test_a_held_message_does_not_hold_up_the_deletes_sent_with_it(
        pg_server: PostgresServer, database: str,
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Another transaction holds a message of queue a (a purge or a queue
    delete in progress): deletes ready together with its delete, in other
    queues or of other messages, are done at once; its own waits for the
    lock and then goes through."""
    import asyncpg

    driver, _ = two_drivers
    a = await post(driver, "p", "a", 2)
    b = await post(driver, "p", "b", 2)
    holder = await asyncpg.connect(pg_server.url(database))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT id FROM messages WHERE id = $1 FOR UPDATE",
                             driver.ids.parse_message_id(a[0]))
        held = asyncio.ensure_future(driver.messages.delete("p", "a", a[0], None))
        others = asyncio.gather(driver.messages.delete("p", "a", a[1], None),
                                driver.messages.delete("p", "b", b[0], None))
        await asyncio.wait_for(others, 10)
        await asyncio.wait_for(driver.messages.delete("p", "b", b[1], None), 10)
        assert not held.done()
        await transaction.commit()
        await asyncio.wait_for(held, 10)
    finally:
        await holder.close()
    for queue in ("a", "b"):
        assert await list_ids(driver, "p", queue, echo=True, include_claimed=True) == []


async def test_concurrent_claims_share_a_statement_and_get_disjoint_messages(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Claims that wait together share one statement (one transaction):
    each gets its own claim id and its own messages, at most its limit,
    the earlier claim the older messages; one that finds nothing left
    gets no claim."""
    driver, _ = two_drivers
    posted = await post(driver, "p", "q", 12)
    limits = [5, 1, 4, 3, 2]
    results = await asyncio.gather(*(
        driver.claims.create("p", "q", ttl=60, grace=60, limit=limit, dead_letter=None)
        for limit in limits))
    got = [[m.id for m in result.messages] for result in results]
    assert got == [posted[0:5], posted[5:6], posted[6:10], posted[10:12], []]
    assert results[4].claim_id is None
    claim_ids = [result.claim_id for result in results[:4]]
    assert None not in claim_ids and len(set(claim_ids)) == 4
    assert len(set(await _transactions_of(driver, posted))) == 1
    for result in results[:4]:
        assert result.claim_id is not None
        stored = await driver.claims.get("p", "q", result.claim_id)
        assert [m.id for m in stored.messages] == [m.id for m in result.messages]
        assert all(m.claim_id == result.claim_id for m in result.messages)


async def test_claims_of_several_queues_share_one_statement(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Claims of different queues that wait together share one statement
    (one transaction): each gets messages of its own queue only, oldest
    first, dealt in the order the claims came; a queue that does not exist
    gives no claim."""
    driver, _ = two_drivers
    posted = {queue: await post(driver, "p", queue, 4) for queue in ("a", "b")}
    asks = [("a", 3), ("b", 2), ("a", 3), ("missing", 1), ("b", 1)]
    results = await asyncio.gather(*(
        driver.claims.create("p", queue, ttl=60, grace=60, limit=limit, dead_letter=None)
        for queue, limit in asks))
    got = [[m.id for m in result.messages] for result in results]
    assert got == [posted["a"][0:3], posted["b"][0:2], posted["a"][3:4], [], posted["b"][2:3]]
    assert results[3].claim_id is None
    claimed = got[0] + got[1] + got[2] + got[4]
    assert len(set(await _transactions_of(driver, claimed))) == 1
    for (queue, _), result in zip(asks, results, strict=True):
        if result.claim_id is not None:
            stored = await driver.claims.get("p", queue, result.claim_id)
            assert [m.id for m in stored.messages] == [m.id for m in result.messages]


async def test_one_failing_claim_of_a_group_leaves_the_others_claimed(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """A group's statement fails as a whole: its claims then run alone, so
    only the one with data PostgreSQL refuses (a ttl beyond its integer)
    fails, and the others claim their messages."""
    driver, _ = two_drivers
    posted = await post(driver, "p", "q", 6)
    now = driver.clock()

    def request(ttl: int) -> ClaimRequest:
        return ClaimRequest(now, secrets.token_hex(12), ttl, 60, 2, now + 60, now + 120, None)

    outcomes = await asyncio.gather(
        *(driver.claims._create("p", "q", request(ttl)) for ttl in (60, 2**40, 60, 60)),
        return_exceptions=True)
    assert isinstance(outcomes[1], errors.TidingsError)
    claimed = [[m.id for m in outcome.messages] for outcome in outcomes
               if isinstance(outcome, ClaimResult)]
    assert claimed == [posted[0:2], posted[2:4], posted[4:6]]


async def test_a_group_posts_to_a_queue_deleted_meanwhile(
        pg_server: PostgresServer, database: str,
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """Another process deletes the queue while a group's statement waits
    for the queue's row: the statement then finds no queue, so the writer
    creates it and posts the group again, every post of it."""
    import asyncpg

    driver, _ = two_drivers
    await post(driver, "p", "q", body="before")
    deleting = await asyncpg.connect(pg_server.url(database))
    try:
        transaction = deleting.transaction()
        await transaction.start()
        queue_id = await deleting.fetchval(q.QUEUE_LOCK_FOR_DELETE, "p", "q")
        await deleting.execute(q.MESSAGES_DELETE_OF_QUEUE, queue_id)
        await deleting.execute(q.QUEUE_DELETE, queue_id)
        posts = asyncio.gather(*(post(driver, "p", "q", body=f"w{i}") for i in range(3)))
        await transaction.commit()
        await posts
    finally:
        await deleting.close()
    page, _ = await list_messages(driver, "p", "q", limit=20)
    assert [m.body for m in page] == ["w0", "w1", "w2"]


async def test_another_process_forgets_changed_metadata_when_notified(
        two_drivers: tuple[PostgresDriver, PostgresDriver]) -> None:
    """A change is announced (NOTIFY): the other process drops its cached
    copy at once, not after METADATA_CACHE_SECONDS (its cache's clock is
    stopped here, so only the announcement can make it read again)."""
    changing, reading = two_drivers
    await changing.queues.create("p", "q", {"v": 1})
    assert await reading.queues.get_metadata("p", "q") == {"v": 1}
    stopped = time.monotonic()
    reading.queues.metadata_cache.monotonic = lambda: stopped
    for change, expected in (
        (changing.queues.set_metadata("p", "q", {"v": 2}), {"v": 2}),
        (changing.queues.delete("p", "q"), None),
    ):
        await change
        while reading.queues.metadata_cache.get("p", "q") is not None:
            await asyncio.sleep(0.01)  # the NOTIFY is on its way
        if expected is None:
            with pytest.raises(errors.QueueDoesNotExist):
                await reading.queues.get_metadata("p", "q")
        else:
            assert await reading.queues.get_metadata("p", "q") == expected
