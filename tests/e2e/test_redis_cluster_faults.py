"""Redis Cluster under a stalled master: answers within socket_timeout,
and nothing stored twice or lost.

redis-py's Cluster client retries a command that timed out. On a master
stopped with SIGSTOP (it keeps its socket, answers nothing) every copy
waits in the socket and runs once the master resumes: a call took three or
four timeouts, then succeeded, and a post could be stored twice for one
answer. The driver now bounds each call by socket_timeout (503 after it)
and gives each post a request token, so copies store once.

A cluster of three masters is started for this module, with a cluster
node timeout far above the stalls, so that a stall is a stall and not a
fail-over.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis_server import RedisClusterServers, unique_prefix
from tests.support.server import ServerProcess
from tidings import errors
from tidings.storage.base import NewMessage
from tidings.storage.redis.keys import Keys
from tidings.storage.registry import driver_from_url

SOCKET_TIMEOUT = 1.0
# A request must end within socket_timeout plus this (wide: a shared CI
# machine, a server process, HTTP in between).
MARGIN = 2.0
STALL = 3.0
CLIENT = "11111111-1111-4111-8111-111111111111"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(node_timeout=60_000)
    try:
        servers.start()
        yield servers
    finally:
        servers.cleanup()


def storage_url(cluster: RedisClusterServers, prefix: str | None = None) -> str:
    return f"{cluster.url}?socket_timeout={SOCKET_TIMEOUT}&prefix={prefix or unique_prefix()}"


async def bodies_in(driver: Any, project: str, queue: str) -> Counter[Any]:
    found: Counter[Any] = Counter()
    marker = None
    while True:
        page, marker = await driver.messages.list(
            project, queue, marker=marker, limit=20, client_id=None, echo=True,
            include_claimed=True, include_delayed=True)
        if not page:
            return found
        found.update(str(m.body) for m in page)


async def test_a_post_to_a_stalled_master_answers_at_the_deadline_and_stores_once(
        cluster: RedisClusterServers) -> None:
    driver = driver_from_url(storage_url(cluster))
    await driver.open()
    try:
        master = cluster.node_of_key(driver.keys.queue("p", "q"))  # type: ignore[attr-defined]
        await driver.messages.post("p", "q", [NewMessage(body="before", ttl=300)], CLIENT)

        async def timed_post() -> tuple[BaseException | None, float]:
            start = time.monotonic()
            try:
                await driver.messages.post("p", "q", [NewMessage(body="once", ttl=300)], CLIENT)
            except errors.TidingsError as exc:
                return exc, time.monotonic() - start
            return None, time.monotonic() - start

        master.pause()
        try:
            attempt = asyncio.create_task(timed_post())
            await asyncio.sleep(STALL)  # the stall itself: real time, on a real server
        finally:
            master.resume()
        error, elapsed = await attempt
        print(f"\npost to a stalled master: {type(error).__name__} after {elapsed:.2f} s")
        assert isinstance(error, errors.ServiceUnavailable), error
        assert elapsed < SOCKET_TIMEOUT + MARGIN
        # Copies sent during the stall run as soon as the master resumes,
        # before this later post.
        await driver.messages.post("p", "q", [NewMessage(body="after", ttl=300)], CLIENT)
        found = await bodies_in(driver, "p", "q")
        print(f"stored after the stall: {dict(found)}")
        assert found["once"] <= 1, found
        assert found["before"] == 1 and found["after"] == 1
    finally:
        await driver.close()


# --- a real server under load ---------------------------------------------------------


def post_load(url: str, project: str, queues: list[str], stop: threading.Event,
              outcomes: list[dict[str, Any]], worker: int) -> None:
    """Post unique payloads round the queues until told to stop; record
    each answer (status, time taken, payload, message id)."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        n = 0
        while not stop.is_set():
            queue = queues[n % len(queues)]
            payload = f"w{worker}-{n}"
            start = time.monotonic()
            try:
                resp = http.post(f"/v2/queues/{queue}/messages",
                                 json={"messages": [{"body": payload, "ttl": 600}]})
                status = resp.status_code
                ids = resp.json().get("resources", []) if status == 201 else []
            except httpx.HTTPError as exc:
                status, ids = type(exc).__name__, []
            outcomes.append({"status": status, "elapsed": time.monotonic() - start,
                             "payload": payload, "queue": queue, "ids": ids})
            n += 1


def stored_payloads(url: str, project: str, queues: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for queue in queues:
            params: dict[str, Any] = {"limit": 20, "echo": "true", "include_claimed": "true"}
            while True:
                page = http.get(f"/v2/queues/{queue}/messages", params=params)
                assert page.status_code == 200, page.text
                messages = page.json()["messages"]
                if not messages:
                    break
                found.update(m["body"] for m in messages)
                nxt = page.json()["links"][0]["href"]
                params = dict(httpx.URL(nxt).params)
    return found


def test_posts_under_load_while_a_master_stalls(cluster: RedisClusterServers,
                                                tmp_path: Path) -> None:
    prefix = unique_prefix()
    proc = ServerProcess(storage=storage_url(cluster, prefix), log_path=tmp_path / "server.log",
                         env={"TIDINGS_LOG_LEVEL": "warning"})
    proc.start()
    project = f"stall-{uuid.uuid4().hex[:8]}"
    queues = [f"q{i}" for i in range(6)]
    # The master of q0 stalls (and of whichever other queues share it).
    stopped = cluster.node_of_key(Keys(prefix).queue(project, "q0"))
    outcomes: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        workers = [threading.Thread(target=post_load,
                                    args=(proc.url, project, queues, stop, outcomes, i))
                   for i in range(4)]
        for w in workers:
            w.start()
        time.sleep(1.0)  # load before the stall
        stopped.pause()
        try:
            time.sleep(STALL)
        finally:
            stopped.resume()
        time.sleep(1.5)  # load after it
        stop.set()
        for w in workers:
            w.join(60)
        found = stored_payloads(proc.url, project, queues)
    finally:
        stopped.resume()
        proc.stop()
    statuses = Counter(o["status"] for o in outcomes)
    slowest = max(o["elapsed"] for o in outcomes)
    acknowledged = {o["payload"] for o in outcomes if o["status"] == 201}
    lost = acknowledged - set(found)
    duplicated = {p: c for p, c in found.items() if c > 1}
    print(f"\nposts {len(outcomes)}: {dict(statuses)}; slowest {slowest:.2f} s; "
          f"stored {sum(found.values())}; lost {len(lost)}; duplicated {len(duplicated)}")
    assert set(statuses) <= {201, 503}, statuses
    assert statuses[503] > 0, "the stall was never felt"
    assert slowest < SOCKET_TIMEOUT + MARGIN, slowest
    assert not lost, sorted(lost)[:10]
    assert not duplicated, duplicated


# --- ?replicas=1: a master killed under load loses no acknowledged post --------------

REPLICATED_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisClusterServers]:
    """Three masters with a replica each; a replica takes over one second
    (cluster-node-timeout) after its master stops answering."""
    servers = RedisClusterServers(replicas=1, node_timeout=1000)
    try:
        servers.start()
        yield servers
    finally:
        servers.cleanup()


def wait_for_failover(cluster: RedisClusterServers, key: str, dead: Any,
                      timeout: float = 30.0) -> float:
    """Seconds until another node serves ``key`` (its replica, promoted)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if cluster.node_of_key(key) is not dead:
                return time.monotonic() - start
        except RuntimeError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no fail-over within {timeout} s")


def test_a_master_killed_under_load_loses_no_acknowledged_post_with_replicas(
        replicated: RedisClusterServers, tmp_path: Path) -> None:
    prefix = unique_prefix()
    storage = (f"{replicated.url}?socket_timeout={REPLICATED_TIMEOUT}&replicas=1"
               f"&prefix={prefix}")
    proc = ServerProcess(storage=storage, log_path=tmp_path / "server.log",
                         env={"TIDINGS_LOG_LEVEL": "warning"})
    proc.start()
    project = f"kill-{uuid.uuid4().hex[:8]}"
    queues = [f"q{i}" for i in range(6)]
    key = Keys(prefix).queue(project, "q0")
    victim = replicated.node_of_key(key)
    on_victim = {q for q in queues if replicated.node_of_key(Keys(prefix).queue(project, q))
                 is victim}
    outcomes: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        workers = [threading.Thread(target=post_load,
                                    args=(proc.url, project, queues, stop, outcomes, i))
                   for i in range(4)]
        for w in workers:
            w.start()
        time.sleep(1.5)  # load before the crash
        killed_at = time.monotonic()
        victim.kill()
        failover = wait_for_failover(replicated, key, victim)
        victim.start()  # back as a replica of the promoted one
        time.sleep(2.0)  # load after it
        stop.set()
        for w in workers:
            w.join(60)
        found = stored_payloads(proc.url, project, queues)
    finally:
        stop.set()
        proc.stop()
    statuses = Counter(o["status"] for o in outcomes)
    acknowledged = {o["payload"] for o in outcomes if o["status"] == 201}
    lost = acknowledged - set(found)
    duplicated = {p: c for p, c in found.items() if c > 1}
    slowest = max(o["elapsed"] for o in outcomes)
    print(f"\nkilled the master of {sorted(on_victim)}; fail-over after {failover:.1f} s; "
          f"posts {len(outcomes)}: {dict(statuses)}; slowest {slowest:.2f} s; "
          f"stored {sum(found.values())}; lost {len(lost)}; duplicated {len(duplicated)}; "
          f"{time.monotonic() - killed_at:.1f} s from the kill to the end")
    assert set(statuses) <= {201, 503}, statuses
    assert not lost, sorted(lost)[:10]
    assert not duplicated, duplicated
    assert slowest < REPLICATED_TIMEOUT + MARGIN, slowest
