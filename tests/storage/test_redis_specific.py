"""What only the Redis driver has: its durability guard, its behaviour when
Redis goes away and comes back, its URL options, and the two-step
dead-letter move between Cluster slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from tests.storage.helpers import claim, claim_result, list_ids, list_messages, post
from tests.support.redis_server import (
    RedisServer,
    session_redis,
    session_redis_cluster,
    unique_prefix,
)
from tidings import errors
from tidings.storage.base import Capability, DeadLetterPolicy, GcResult, NewMessage
from tidings.storage.redis import scripts
from tidings.storage.redis.driver import RedisDriver
from tidings.storage.redis.messages import new_salt, sequence_seed
from tidings.storage.registry import driver_from_url

TIMEOUT = 1.0  # socket_timeout of the drivers that see failures
SLACK = 2.0  # what a failure may take beyond the timeout (connect + read)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A persistent redis-server of this test's own: the test stops it."""
    redis = RedisServer().start()
    yield redis
    redis.cleanup()


@pytest.fixture(scope="module")
def volatile() -> Iterator[RedisServer]:
    """A redis-server that keeps nothing on disk."""
    redis = RedisServer(persistent=False).start()
    yield redis
    redis.cleanup()


def url(server: RedisServer, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": unique_prefix(), **options}.items())
    return f"{server.url}?{query}"


# --- the durability guard ---------------------------------------------------


async def test_refuses_a_redis_that_does_not_persist(volatile, clock):
    driver = driver_from_url(url(volatile), clock=clock)
    with pytest.raises(RuntimeError) as caught:
        await driver.open()
    message = str(caught.value)
    assert "does not persist" in message
    assert "appendonly yes" in message and "unreliable=true" in message
    assert f"127.0.0.1:{volatile.port}" in message
    assert not await driver.is_alive()


async def test_runs_on_a_redis_that_does_not_persist_when_unreliable(volatile, clock, project):
    driver = driver_from_url(url(volatile, unreliable="true"), clock=clock)
    await driver.open()
    try:
        assert Capability.DURABILITY not in driver.capabilities
        assert Capability.HIGH_THROUGHPUT in driver.capabilities
        posted = await post(driver, project, "q", 2)
        assert await list_ids(driver, project, "q") == posted
    finally:
        await driver.close()


async def test_durability_capability_on_a_persistent_redis(clock):
    for where in (session_redis().url, session_redis_cluster().url):
        driver = driver_from_url(f"{where}?prefix={unique_prefix()}", clock=clock)
        await driver.open()
        try:
            assert Capability.DURABILITY in driver.capabilities
            assert {Capability.FIFO, Capability.CLAIMS, Capability.AT_LEAST_ONCE} <= (
                driver.capabilities
            )
            assert driver.persistence["persistent"] is True
        finally:
            await driver.close()


@pytest.mark.parametrize("persistent", [True, False])
async def test_without_config_command_falls_back_to_info(persistent, clock):
    """Managed Redis often disables CONFIG: INFO tells whether AOF is on."""
    redis = RedisServer(persistent=persistent, extra=("--rename-command", "CONFIG", "")).start()
    try:
        driver = driver_from_url(url(redis), clock=clock)
        if persistent:
            await driver.open()
            assert Capability.DURABILITY in driver.capabilities
            assert "INFO shows AOF on" in driver.persistence["detail"]
            await driver.close()
        else:
            with pytest.raises(RuntimeError, match="CONFIG is not available.*unreliable=true"):
                await driver.open()
    finally:
        redis.cleanup()


async def test_refuses_to_open_an_unreachable_redis_quickly(clock):
    from tests.support.ports import free_port

    driver = driver_from_url(
        f"redis://127.0.0.1:{free_port()}/0?socket_timeout={TIMEOUT}", clock=clock
    )
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable):
        await driver.open()
    assert time.monotonic() - started < TIMEOUT + SLACK


# --- Redis going away and coming back ---------------------------------------


def operations(driver, project):
    """One of each kind of call (not yet called); each must raise
    ServiceUnavailable while Redis is away."""
    return [
        lambda: post(driver, project, "q"),
        lambda: list_messages(driver, project, "q"),
        lambda: driver.messages.get(project, "q", "0" * 24),
        lambda: driver.messages.pop(project, "q", 1),
        lambda: claim(driver, project, "q"),
        lambda: driver.claims.get(project, "q", "c"),
        lambda: driver.queues.create(project, "other", {}),
        lambda: driver.queues.get_metadata(project, "q"),
        lambda: driver.queues.list(project, marker=None, limit=10, detailed=True),
        lambda: driver.queues.count(project),
        lambda: driver.queues.stats(project, "q"),
        lambda: driver.gc(),
    ]


async def assert_each_fails_in_time(driver, project):
    for call in operations(driver, project):
        started = time.monotonic()
        with pytest.raises(errors.ServiceUnavailable) as caught:
            await asyncio.wait_for(call(), TIMEOUT + SLACK + 5)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert "The Redis storage is unavailable" in caught.value.description
        assert "127.0.0.1" not in caught.value.description  # no addresses to tenants


async def test_stopped_redis_gives_service_unavailable_then_recovers(server, clock, project):
    driver = driver_from_url(url(server, socket_timeout=str(TIMEOUT)), clock=clock)
    await driver.open()
    try:
        before = await post(driver, project, "q", 3)

        server.stop()
        await assert_each_fails_in_time(driver, project)
        assert await driver.is_alive() is False
        assert (await driver.health())["storage_reachable"] is False

        server.start()  # same port, same directory: the AOF brings the data back
        assert await list_ids(driver, project, "q") == before
        assert await driver.is_alive() is True
        after = await post(driver, project, "q", 1)
        claim_id, claimed = await claim(driver, project, "q", limit=10)
        assert [m.id for m in claimed] == before + after
        await driver.messages.delete(project, "q", before[0], claim_id)
        assert (await driver.queues.stats(project, "q")).claimed == 3
    finally:
        await driver.close()


async def test_hung_redis_gives_service_unavailable_within_the_timeout(server, clock, project):
    driver = driver_from_url(url(server, socket_timeout=str(TIMEOUT)), clock=clock)
    await driver.open()
    try:
        posted = await post(driver, project, "q", 2)
        server.pause()  # accepts connections, answers nothing
        # Reads only: a write that times out may still be applied once the
        # server wakes (an ambiguous outcome, as with any networked store).
        reads = [driver.queues.stats, driver.queues.get_metadata]
        try:
            for call in [*operations(driver, project)[1:3], *(
                lambda read=read: read(project, "q") for read in reads
            )]:
                started = time.monotonic()
                with pytest.raises(errors.ServiceUnavailable):
                    await asyncio.wait_for(call(), TIMEOUT + SLACK + 5)
                assert time.monotonic() - started < TIMEOUT + SLACK
        finally:
            server.resume()
        assert await list_ids(driver, project, "q") == posted
    finally:
        await driver.close()


# --- URL options --------------------------------------------------------------


def test_url_options():
    driver = RedisDriver.from_url(
        "redis://user:secret@127.0.0.1:7000/3?prefix=app1:&unreliable=true&socket_timeout=2.5"
    )
    assert driver.keys.prefix == "app1:"
    assert driver.unreliable is True and driver.cluster is False
    assert driver.socket_timeout == 2.5 and driver.connect_timeout == 2.5
    assert driver.client_url == "redis://user:secret@127.0.0.1:7000/3"
    assert "secret" not in driver.where

    cluster = RedisDriver.from_url("redis+cluster://127.0.0.1:7000")
    assert cluster.cluster is True and cluster.client_url == "redis://127.0.0.1:7000"
    assert RedisDriver.from_url("redis://127.0.0.1:7000/0?cluster=true").cluster is True
    tls = RedisDriver.from_url("rediss+cluster://h:7000?ssl_cert_reqs=none")
    assert tls.cluster and tls.client_url == "rediss://h:7000?ssl_cert_reqs=none"
    assert RedisDriver.from_url("redis://h").keys.prefix == "tidings:"


@pytest.mark.parametrize(
    "bad",
    [
        "redis://h/0?unreliable=maybe",
        "redis://h/0?socket_timeout=-1",
        "redis://h/0?socket_timeout=soon",
        "redis://h/0?prefix={tag}",
        "http://h/0",
    ],
)
def test_bad_url_options_are_refused(bad):
    with pytest.raises(ValueError):
        RedisDriver.from_url(bad)


def test_registry_knows_every_redis_scheme():
    for scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        assert isinstance(driver_from_url(f"{scheme}://127.0.0.1:1"), RedisDriver)


# --- key layout -------------------------------------------------------------


@pytest.fixture(params=["redis", "redis-cluster"])
async def redis_driver(request, clock):
    where = session_redis().url if request.param == "redis" else session_redis_cluster().url
    driver = driver_from_url(f"{where}?prefix={unique_prefix()}", clock=clock)
    await driver.open()
    yield driver
    await driver.close()


async def test_a_stored_secret_is_shared_by_every_process(clock):
    # SET NX, then GET: one key wins, whichever process asks first.
    where = f"{session_redis().url}?prefix={unique_prefix()}"
    drivers = [driver_from_url(where, clock=clock) for _ in range(2)]
    for driver in drivers:
        await driver.open()
    try:
        keys = await asyncio.gather(*(d.stored_secret("signed-urls") for d in drivers))
    finally:
        for driver in drivers:
            await driver.close()
    assert keys[0] == keys[1] and len(keys[0]) == 64


async def test_project_and_queue_names_cannot_collide_or_break_the_hash_tag(redis_driver):
    pairs = [("a/b", "c"), ("a", "b/c"), ("x}{y", "q"), ("x", "}{y/q"), ("%2F", "q")]
    posted = {pair: await post(redis_driver, *pair, body=list(pair)) for pair in pairs}
    for pair, ids in posted.items():
        page, _ = await list_messages(redis_driver, *pair)
        assert [(m.id, m.body) for m in page] == [(ids[0], list(pair))]
        records = await redis_driver.queues.list(pair[0], marker=None, limit=10, detailed=False)
        assert pair[1] in [r.name for r in records]


async def test_health_reports_message_counts(redis_driver, project, clock):
    await post(redis_driver, project, "a", 2)
    await post(redis_driver, project, "b", 1, ttl=60)
    clock.advance(60)
    report = await redis_driver.health()
    assert report["storage_reachable"] is True
    assert report["persistence"]["persistent"] is True
    counts = {(c["project"], c["queue"]): c["messages"] for c in report["message_counts"]}
    assert counts == {(project, "a"): 2, (project, "b"): 0}


async def test_gc_removes_every_key_of_expired_messages_and_claims(redis_driver, project, clock):
    await post(redis_driver, project, "q", 3, ttl=60)
    await claim(redis_driver, project, "q", ttl=60, grace=60)
    clock.advance(121)
    assert await redis_driver.gc() == GcResult(messages=3, claims=1)
    base = redis_driver.keys.queue(project, "q")
    client = redis_driver.client
    for suffix in (":i", ":e", ":m", ":b", ":c", ":ce"):
        assert not await client.exists(base + suffix), suffix
    assert await client.exists(base + ":q")


async def test_deleted_queue_made_again_issues_new_ids(redis_driver, project):
    old = await post(redis_driver, project, "q", 3)
    _, marker = await list_messages(redis_driver, project, "q")
    await redis_driver.queues.delete(project, "q")
    new = await post(redis_driver, project, "q", 2)
    assert not set(old) & set(new)
    # A marker from before the delete does not skip the new messages.
    assert await list_ids(redis_driver, project, "q", marker=marker) == new


# --- dead letters across Cluster slots ----------------------------------------


def other_slot_queue(driver: RedisDriver, project: str, queue: str) -> str:
    source = key_slot(driver.keys.queue(project, queue).encode())
    for i in range(100):
        name = f"dlq{i}"
        if key_slot(driver.keys.queue(project, name).encode()) != source:
            return name
    raise AssertionError("no queue name in another slot")


@pytest.fixture
async def cluster_driver(clock):
    driver = driver_from_url(
        f"{session_redis_cluster().url}?prefix={unique_prefix()}", clock=clock
    )
    await driver.open()
    yield driver
    await driver.close()


async def test_dead_letter_move_to_another_slot(cluster_driver, project):
    dlq = other_slot_queue(cluster_driver, project, "q")
    policy = DeadLetterPolicy(max_claim_count=1, queue=dlq, ttl=600)
    await post(cluster_driver, project, "q", 2, body="poison")
    claim_id, _ = await claim(cluster_driver, project, "q", dead_letter=policy)
    await cluster_driver.claims.delete(project, "q", claim_id)
    fresh = await post(cluster_driver, project, "q", 1, body="fresh")

    result = await claim_result(cluster_driver, project, "q", dead_letter=policy)
    assert [m.id for m in result.messages] == fresh
    # Counted when parked, by the claim that parked them.
    assert result.dead_lettered == 2
    page, _ = await list_messages(cluster_driver, project, dlq)
    assert [(m.body, m.ttl) for m in page] == [("poison", 600), ("poison", 600)]
    names = await cluster_driver.queues.list(project, marker=None, limit=10, detailed=False)
    assert sorted(r.name for r in names) == sorted([dlq, "q"])
    assert not await cluster_driver.client.exists(cluster_driver.keys.queue(project, "q") + ":d")


async def test_interrupted_dead_letter_move_is_finished_once(cluster_driver, project, clock):
    """A crash after step 1 (parked) or step 2 (added to the dead letter
    queue) must neither lose nor duplicate the message."""
    driver = cluster_driver
    dlq = other_slot_queue(driver, project, "q")
    source = driver.keys.queue(project, "q")
    [message_id] = await post(driver, project, "q", body="poison")
    claim_id, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", claim_id)

    # Step 1 alone, as if the process died right after the claim script.
    now = clock()
    await driver.run(scripts.claim, [source], [
        repr(now), "c" * 24, 60, 60, 10, 1, "remote", dlq, 600, sequence_seed(now), new_salt(),
    ])
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)
    assert (await driver.queues.stats(project, "q")).total == 0
    assert await list_ids(driver, project, dlq) == []

    # Step 2 alone, twice: the receipt makes the repeat a no-op.
    flat = await driver.run(scripts.dead_letter_take, [source], [100])
    assert len(flat) == 3
    receipt = f"{driver.keys.member(project, 'q')}/{flat[0].decode()}"
    for _ in range(2):
        await driver.run(scripts.dead_letter_put, [driver.keys.queue(project, dlq)], [
            repr(now), sequence_seed(now), new_salt(), receipt, repr(now + 600), "client",
            flat[2],
        ])
    assert len(await list_ids(driver, project, dlq)) == 1

    # gc finds the parked message and finishes: still exactly one copy.
    await driver.gc()
    assert not await driver.client.exists(source + ":d")
    page, _ = await list_messages(driver, project, dlq)
    assert [m.body for m in page] == ["poison"]


# --- the same answers as the reference driver ---------------------------------


@pytest.mark.parametrize("seed", range(3))
async def test_random_operations_match_the_sqlite_driver(redis_driver, tmp_path, seed):
    """A random mix of posts, claims, renewals, releases, deletes, pops,
    gc and time passing gives the same visible state as SQLite's driver
    (bodies name the messages: ids differ between drivers)."""
    import random

    from tests.storage.conftest import sqlite_driver
    from tests.support.clock import FakeClock

    rng = random.Random(seed)
    redis_clock = redis_driver.clock
    sqlite_clock = FakeClock(redis_clock())
    project = f"r-{seed}-{unique_prefix()}"
    async with sqlite_driver(tmp_path, sqlite_clock) as reference:
        drivers = [redis_driver, reference]
        claims: list[tuple[str, str]] = []  # (redis claim id, sqlite claim id)
        ids: dict[int, list[str]] = {}  # body -> [redis id, sqlite id]
        counter = 0

        async def both(fn):
            return [await fn(d) for d in drivers]

        def by_body(messages):
            return sorted(m.body for m in messages)

        for _ in range(150):
            op = rng.choice(["post", "post", "claim", "claim", "release", "renew",
                             "delete", "pop", "advance", "gc", "check"])
            if op == "post":
                n = rng.randint(1, 4)
                ttl = rng.choice([60, 120, 3600])
                delay = rng.choice([0, 0, 30])
                bodies = list(range(counter, counter + n))
                counter += n
                batch = [NewMessage(body=b, ttl=ttl, delay=delay) for b in bodies]
                got = [await d.messages.post(project, "q", batch, "c") for d in drivers]
                for i, body in enumerate(bodies):
                    ids[body] = [got[0][i], got[1][i]]
            elif op == "claim":
                ttl, limit = rng.choice([60, 90]), rng.randint(1, 5)
                got = [await claim(d, project, "q", ttl=ttl, grace=30, limit=limit)
                       for d in drivers]
                assert by_body(got[0][1]) == by_body(got[1][1])
                if got[0][0]:
                    claims.append((got[0][0], got[1][0]))
            elif op in ("release", "renew") and claims:
                pair = rng.choice(claims)
                for d, cid in zip(drivers, pair):
                    if op == "release":
                        await d.claims.delete(project, "q", cid)
                    else:
                        try:
                            await d.claims.update(project, "q", cid, ttl=120, grace=30)
                        except errors.ClaimNotFound:
                            pass
            elif op == "delete" and ids:
                body = rng.choice(list(ids))
                outcomes = []
                for d, mid in zip(drivers, ids[body]):
                    try:
                        await d.messages.delete(project, "q", mid, None)
                        outcomes.append("ok")
                    except errors.TidingsError as exc:
                        outcomes.append(type(exc).__name__)
                assert outcomes[0] == outcomes[1]
            elif op == "pop":
                got = await both(lambda d: d.messages.pop(project, "q", 2))
                assert by_body(got[0]) == by_body(got[1])
            elif op == "advance":
                step = rng.choice([10, 30, 61])
                redis_clock.advance(step)
                sqlite_clock.advance(step)
            elif op == "gc":
                await both(lambda d: d.gc())
            stats = await both(lambda d: d.queues.stats(project, "q"))
            assert (stats[0].claimed, stats[0].free) == (stats[1].claimed, stats[1].free)
            for flags in ({}, {"include_claimed": True, "include_delayed": True}):
                pages = [await list_messages(d, project, "q", limit=100, **flags)
                         for d in drivers]
                assert [m.body for m in pages[0][0]] == [m.body for m in pages[1][0]]
                assert [(m.claim_id is None, m.claim_count, m.ttl, m.age)
                        for m in pages[0][0]] == [(m.claim_id is None, m.claim_count, m.ttl,
                                                   m.age) for m in pages[1][0]]


# --- the notification outbox across queues (and Cluster slots) ---------------


def queues_in_distinct_slots(driver: RedisDriver, project: str, n: int) -> list[str]:
    names, slots = [], set()
    for i in range(1000):
        slot = key_slot(driver.keys.queue(project, f"q{i}").encode())
        if slot not in slots:
            slots.add(slot)
            names.append(f"q{i}")
            if len(names) == n:
                return names
    raise AssertionError("not enough slots")


async def _subscribe(driver, project, queue, subscriber="http://example.com/hook"):
    from tidings.storage.base import NewSubscription

    return await driver.subscriptions.create(
        project, queue, NewSubscription(subscriber=subscriber, ttl=3600, options={})
    )


async def test_lease_merges_queues_of_other_slots_oldest_due_first(redis_driver, project, clock):
    a, b, c = queues_in_distinct_slots(redis_driver, project, 3)
    for queue in (a, b, c):
        await _subscribe(redis_driver, project, queue)
    order = []
    for queue in (a, b, c, a, c, b):
        [message_id] = await post(redis_driver, project, queue)
        order.append(message_id)
        clock.advance(1)
    # One at a time and in pairs: the oldest due across queues each time;
    # what a lease took beyond its limit went back at once.
    got = [d.payload["id"] for d in await redis_driver.deliveries.lease(limit=1, lease_seconds=60)]
    got += [d.payload["id"] for d in await redis_driver.deliveries.lease(limit=2, lease_seconds=60)]
    leased = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    got += [d.payload["id"] for d in leased]
    assert got == order
    assert await redis_driver.deliveries.lease(limit=10, lease_seconds=60) == []


async def test_outbox_hint_lost_in_a_crash_is_restored_by_gc(redis_driver, project, clock):
    """A process dying between the post script and the hint update leaves
    deliveries no lease sees; gc finds them through the subscribed set."""
    await _subscribe(redis_driver, project, "q")
    [message_id] = await post(redis_driver, project, "q")
    await redis_driver.client.delete(redis_driver.keys.outbox)
    assert await redis_driver.deliveries.lease(limit=10, lease_seconds=60) == []
    assert await redis_driver.gc() == GcResult()
    [delivery] = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    assert delivery.payload["id"] == message_id


async def test_outbox_hints_never_hide_due_deliveries(redis_driver, project, clock):
    keys = redis_driver.keys
    member = keys.member(project, "q")
    await _subscribe(redis_driver, project, "q")
    await post(redis_driver, project, "q")
    [leased] = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    # Leased: the hint is the lease's end.
    assert await redis_driver.client.zscore(keys.outbox, member) == clock() + 60
    [fresh] = await post(redis_driver, project, "q")
    assert await redis_driver.client.zscore(keys.outbox, member) == clock()
    [again] = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    assert again.payload["id"] == fresh
    await redis_driver.deliveries.delivered(leased.id)
    await redis_driver.deliveries.delivered(again.id)
    # Nothing pending: the queue leaves the outbox.
    assert await redis_driver.client.zscore(keys.outbox, member) is None


async def test_stale_outbox_hints_are_dropped_by_lease(redis_driver, project):
    keys = redis_driver.keys
    await _subscribe(redis_driver, project, "q")
    await post(redis_driver, project, "q")
    await redis_driver.queues.delete(project, "q")
    await redis_driver.client.zadd(keys.outbox, {keys.member(project, "ghost"): 0})
    assert await redis_driver.deliveries.lease(limit=10, lease_seconds=60) == []
    assert await redis_driver.client.zcard(keys.outbox) == 0


async def test_delivery_ids_name_their_queue_and_nothing_else(redis_driver, project):
    await _subscribe(redis_driver, project, "a/b}{")
    await post(redis_driver, project, "a/b}{")
    [delivery] = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    assert (delivery.project, delivery.queue) == (project, "a/b}{")
    head, _, tag = delivery.id.partition(".")
    for forged in (head, f"{head}.", f"{head}.{tag}x", f"{head}.{tag[:-1]}", f"{head}.!{tag}"):
        await redis_driver.deliveries.delivered(forged)
        await redis_driver.deliveries.dead(forged, error="x")
    assert [d.id for d in await redis_driver.deliveries.list(
        project, "a/b}{", status=base_status("pending"), marker=None, limit=10)] == [delivery.id]


def base_status(name: str):
    from tidings.storage.base import DeliveryStatus

    return DeliveryStatus(name)


async def test_gc_drops_dead_deliveries_after_the_retention(redis_driver, project, clock):
    from tidings.storage.base import NewSubscription

    forever = 10 * int(redis_driver.dead_retention)
    await redis_driver.subscriptions.create(
        project, "q", NewSubscription(subscriber="http://example.com/", ttl=forever, options={})
    )
    await post(redis_driver, project, "q", 2, ttl=forever)
    first, second = await redis_driver.deliveries.lease(limit=10, lease_seconds=60)
    await redis_driver.deliveries.dead(first.id, error="x")
    clock.advance(redis_driver.dead_retention - 1)
    await redis_driver.deliveries.dead(second.id, error="x")
    assert await redis_driver.gc() == GcResult()
    clock.advance(1)
    assert await redis_driver.gc() == GcResult(deliveries=1)
    dead = await redis_driver.deliveries.list(project, "q", status=base_status("dead"),
                                              marker=None, limit=10)
    assert [d.id for d in dead] == [second.id]


async def test_gc_forgets_queues_whose_subscriptions_are_gone(redis_driver, project, clock):
    keys = redis_driver.keys
    subscription_id = await _subscribe(redis_driver, project, "q")
    await post(redis_driver, project, "q")
    await redis_driver.subscriptions.delete(project, "q", subscription_id)
    assert await redis_driver.client.zcard(keys.outbox) == 0
    await redis_driver.gc()
    assert await redis_driver.client.scard(keys.subscribed) == 0
    base = keys.queue(project, "q")
    for suffix in (":ns", ":no", ":ne", ":nu", ":nq", ":nd", ":nw", ":np", ":nx", ":nk"):
        assert not await redis_driver.client.exists(base + suffix), suffix


# --- watches over pub/sub -------------------------------------------------------


async def test_a_post_through_another_driver_wakes_a_watch(redis_driver, project, clock):
    """Another process posting: the pub/sub signal crosses connections (and
    Cluster nodes: the queues are spread over slots)."""
    where = redis_driver.client_url if not redis_driver.cluster else session_redis_cluster().url
    prefix = redis_driver.keys.prefix
    other = driver_from_url(f"{where}{'&' if '?' in where else '?'}prefix={prefix}", clock=clock)
    await other.open()
    try:
        for queue in queues_in_distinct_slots(redis_driver, project, 3):
            async with redis_driver.watch(project, queue) as watch:
                await post(other, project, queue)
                assert await watch.wait(5) is True
    finally:
        await other.close()


async def test_a_lost_pubsub_connection_wakes_watches_and_recovers(redis_driver, project):
    async with redis_driver.watch(project, "q") as watch:
        waiter = asyncio.ensure_future(watch.wait(30))
        await asyncio.sleep(0.05)
        # Kill the pub/sub connection from the server's side.
        if redis_driver.cluster:
            # On its node only. The driver's bus listener subscribes again
            # at once, on a new connection to any node: killing every
            # node's in turn could kill that one too, and its loss, heard
            # a moment later, would rightly wake the next watch.
            node = redis_driver.watches._client.connection_pool.connection_kwargs
            direct = aioredis.Redis(host=node["host"], port=node["port"])
            await direct.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await direct.aclose()
        else:
            await redis_driver.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert await asyncio.wait_for(waiter, 5) is True
    async with redis_driver.watch(project, "q") as watch:
        assert await watch.wait(0.05) is False
        await post(redis_driver, project, "q")
        assert await watch.wait(5) is True


async def test_a_connection_lost_while_subscribing_costs_one_more_try(server, clock, project):
    """The pub/sub connection drops while a watch's SUBSCRIBE awaits its
    confirmation (here: the server is stopped, so it cannot confirm): the
    watch subscribes again on a new connection instead of failing."""
    driver = driver_from_url(url(server, socket_timeout="5"), clock=clock)
    await driver.open()
    hub = driver.watches
    try:
        server.pause()
        try:
            entering = asyncio.ensure_future(driver.watch(project, "q").__aenter__())
            while not hub._confirms:  # the SUBSCRIBE is out, unconfirmed
                await asyncio.sleep(0.01)
            await hub._drop(ConnectionError("lost"))  # what the reader does on a failure
        finally:
            server.resume()
        watch = await asyncio.wait_for(entering, 5)
        try:
            await post(driver, project, "q")
            assert await watch.wait(5) is True
        finally:
            await watch.__aexit__(None, None, None)
    finally:
        await driver.close()


# --- ?replicas=N: acknowledged once replicas have the write -----------------------


async def test_replicas_option_refuses_writes_no_replica_confirms(clock):
    """The session's redis-server has no replica: with ?replicas=1 a post
    waits for one (WAIT) and answers 503 (on a script the server has never
    seen too: EVALSHA, then its source); reads do not wait. With none
    asked, a post is stored."""
    server = session_redis()
    waiting = driver_from_url(url(server, replicas="1", socket_timeout="0.5"), clock=clock)
    await waiting.open()
    try:
        assert (await waiting.health())["replicas"] == 1
        with pytest.raises(errors.ServiceUnavailable, match="not confirmed by 1"):
            await post(waiting, "p", "q")
        # The master kept the write: 503 means "unknown", not "not stored".
        assert len(await list_ids(waiting, "p", "q")) == 1
    finally:
        await waiting.close()
    plain = driver_from_url(url(server, replicas="0"), clock=clock)
    await plain.open()
    try:
        assert len(await post(plain, "p", "q")) == 1
    finally:
        await plain.close()


@pytest.mark.parametrize("value", ["-1", "two"])
def test_replicas_option_must_be_a_count(value):
    with pytest.raises(ValueError, match="replicas"):
        driver_from_url(f"redis://127.0.0.1:6379/0?replicas={value}")


# --- a command sent twice (Redis Cluster's client retries) -------------------------


async def test_a_post_sent_twice_with_its_token_stores_once(redis_driver, project, clock):
    """What the Cluster client does to a post that timed out on a stalled
    master: the same script, same arguments, run a second time."""
    from tidings.storage.redis.keys import member_tag

    driver = redis_driver
    member = driver.keys.member(project, "q")
    now = clock()
    args = [repr(now), sequence_seed(now), new_salt(), "client", 2,
            300, 0, b'"one"', 300, 0, b'"two"',
            sequence_seed(now), new_salt(), member_tag(member), "token-1"]
    key = driver.keys.queue_from_member(member)
    first = await driver.run(scripts.post, [key], args)
    again = await driver.run(scripts.post, [key], args)
    assert again == first
    assert len(await list_ids(driver, project, "q", echo=True)) == 2
    # Another token is another post.
    await driver.run(scripts.post, [key], [*args[:-1], "token-2"])
    assert len(await list_ids(driver, project, "q", echo=True)) == 4


async def test_a_claim_sent_twice_claims_once(redis_driver, project, clock):
    driver = redis_driver
    await post(driver, project, "q", 5)
    key = driver.keys.queue(project, "q")
    now = clock()
    args = [repr(now), "c" * 24, 60, 60, 2, 0, "drop", "", 0, sequence_seed(now), new_salt()]
    first = await driver.run(scripts.claim, [key], args)
    again = await driver.run(scripts.claim, [key], args)
    claimed = first[2][0::3]
    assert len(claimed) == 2 and again[2][0::3] == claimed
    # Only those two are claimed: three remain free for the next claim.
    _, rest = await claim(driver, project, "q", limit=10)
    assert len(rest) == 3


async def test_a_subscription_create_sent_twice_answers_the_same_id(redis_driver, project,
                                                                    clock):
    driver = redis_driver
    key = driver.keys.queue(project, "q")
    now = clock()
    args = [repr(now), 3600, "http://127.0.0.1/hook", b"{}", 1, sequence_seed(now), new_salt()]
    first = await driver.run(scripts.sub_create, [key], args)
    assert first is not None
    assert await driver.run(scripts.sub_create, [key], args) == first
    # Another create for the same subscriber is a duplicate (the caller's 409).
    assert await driver.run(scripts.sub_create, [key], [*args[:-1], new_salt()]) is None
    assert len(await driver.subscriptions.list(project, "q", marker=None, limit=10)) == 1
