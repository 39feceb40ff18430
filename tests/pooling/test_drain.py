"""`tidings pool drain` on a live deployment: a real server over an SQLite,
a Redis and a PostgreSQL pool (the control store on Redis), a producer and a
consumer working over HTTP while the real CLI moves every queue off the
SQLite pool. Afterwards every message produced was consumed exactly once or
is still in its queue, and the drained pool can be removed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.postgres_server import shared_server
from tests.support.redis_server import session_redis, unique_prefix
from tests.support.server import ServerProcess
from tidings.storage.pooling.control import control_from_url
from tidings.storage.registry import driver_from_url

QUEUES = [f"jobs-{i}" for i in range(4)]
CACHE_SECONDS = "0.3"
GRACE = "0.5"


@dataclass
class Deployment:
    server: ServerProcess
    env: dict[str, str]
    control_url: str
    urls: dict[str, str]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tidings", "pool", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    pg = shared_server()
    database = f"drain_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    redis_url = session_redis().url
    control_url = f"{redis_url}?prefix={unique_prefix()}"
    pooling = {"TIDINGS_POOLING__ENABLED": "true",
               "TIDINGS_POOLING__CONTROL_STORAGE": control_url,
               "TIDINGS_POOLING__CACHE_SECONDS": CACHE_SECONDS,
               "TIDINGS_POOLING__MOVE_WAIT": "30"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}, **pooling}
    urls = {"lite": f"sqlite:///{tmp_path}/lite.db?sync=normal",
            "red": f"{redis_url}?prefix={unique_prefix()}",
            "pg": pg.url(database, max_size=4)}
    server = ServerProcess(storage=f"sqlite:///{tmp_path}/unused.db",
                           log_path=tmp_path / "server.log", env=pooling)
    deployment = Deployment(server, env, control_url, urls)
    added = deployment.cli("add", "lite", urls["lite"])
    assert added.returncode == 0, added.stderr
    server.start()
    try:
        yield deployment
    finally:
        server.stop()


@dataclass
class Traffic:
    """What the producer and the consumer saw, guarded by ``changed``."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    stop_producing: threading.Event = field(default_factory=threading.Event)
    stop_consuming: threading.Event = field(default_factory=threading.Event)
    produced: list[str] = field(default_factory=list)
    # Posts answered with anything but 201: (status, body).
    failed_posts: list[tuple[int, str]] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)
    failed_deletes: list[tuple[int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def wait_for(self, predicate: object, what: str, timeout: float = 60) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):  # type: ignore[arg-type]
                raise AssertionError(f"timed out waiting for {what}")


def client(server: ServerProcess, project: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60,
                        headers={"X-Project-ID": project, "Client-ID": str(uuid.uuid4())})


def produce(server: ServerProcess, project: str, traffic: Traffic) -> None:
    with client(server, project) as http:
        i = 0
        while not traffic.stop_producing.is_set():
            queue = QUEUES[i % len(QUEUES)]
            bodies = [f"{queue}/{i}/{k}" for k in range(1 + i % 3)]
            resp = http.post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"ttl": 3600, "body": b} for b in bodies]})
            with traffic.changed:
                if resp.status_code == 201:
                    traffic.produced.extend(bodies)
                else:
                    traffic.failed_posts.append((resp.status_code, resp.text))
                traffic.changed.notify_all()
            i += 1


def consume(server: ServerProcess, project: str, traffic: Traffic) -> None:
    with client(server, project) as http:
        while not traffic.stop_consuming.is_set():
            for queue in QUEUES:
                resp = http.post(f"/v2/queues/{queue}/claims?limit=5",
                                 json={"ttl": 60, "grace": 60})
                if resp.status_code != 201:
                    continue
                for message in resp.json()["messages"]:
                    deleted = http.delete(message["href"])
                    with traffic.changed:
                        if deleted.status_code == 204:
                            traffic.consumed.append(message["body"])
                        else:
                            traffic.failed_deletes.append((deleted.status_code, deleted.text))
                        traffic.changed.notify_all()


def guarded(target: object, *args: object) -> threading.Thread:
    traffic: Traffic = args[-1]  # type: ignore[assignment]

    def run() -> None:
        try:
            target(*args)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            with traffic.changed:
                traffic.errors.append(exc)
                traffic.changed.notify_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def remaining(server: ServerProcess, project: str) -> list[str]:
    """Bodies still in the queues, claimed or not."""
    bodies: list[str] = []
    with client(server, project) as http:
        for queue in QUEUES:
            url: str | None = (f"/v2/queues/{queue}/messages?echo=true&include_claimed=true"
                               "&limit=20")
            while url:
                resp = http.get(url)
                if resp.status_code == 204:
                    break
                page = resp.json()
                if not page["messages"]:
                    break
                bodies.extend(m["body"] for m in page["messages"])
                url = next((link["href"] for link in page["links"] if link["rel"] == "next"),
                           None)
    return bodies


async def placements(control_url: str, project: str) -> dict[str, str | None]:
    control = control_from_url(control_url)
    await control.open()
    try:
        found = {}
        for queue in [*QUEUES, "watched"]:
            placement = await control.lookup(project, queue)
            found[queue] = placement.pool if placement else None
        return found
    finally:
        await control.close()


async def queues_left_on(url: str, project: str) -> int:
    driver = driver_from_url(url)
    await driver.open()
    try:
        return await driver.queues.count(project)
    finally:
        await driver.close()


def test_drain_moves_every_queue_while_clients_work(deployment: Deployment) -> None:
    server, project = deployment.server, f"drain-{uuid.uuid4().hex[:8]}"
    with client(server, project) as http:
        for queue in QUEUES:
            assert http.put(f"/v2/queues/{queue}", json={"team": queue}).status_code == 201
        assert http.put("/v2/queues/watched", json={}).status_code == 201
        sub = http.post("/v2/queues/watched/subscriptions",
                        json={"subscriber": "mailto:ops@example.com", "ttl": 3600})
        assert sub.status_code == 201, sub.text
    assert set(asyncio.run(placements(deployment.control_url, project)).values()) == {"lite"}
    for name in ("red", "pg"):
        added = deployment.cli("add", name, deployment.urls[name])
        assert added.returncode == 0, added.stderr

    traffic = Traffic()
    producer = guarded(produce, server, project, traffic)
    consumer = guarded(consume, server, project, traffic)
    traffic.wait_for(lambda: len(traffic.consumed) >= 30 or traffic.errors, "traffic")
    with traffic.changed:
        produced_before = len(traffic.produced)

    drained = deployment.cli("drain", "lite", "--grace", GRACE, "--claim-wait", "30")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert "5 queues moved, 0 left" in drained.stdout

    # The clients kept working through the drain and go on afterwards.
    with traffic.changed:
        produced_after_drain = len(traffic.produced)
    assert produced_after_drain > produced_before
    traffic.wait_for(lambda: len(traffic.produced) >= produced_after_drain + 30
                     or traffic.errors, "posts after the drain")
    traffic.stop_producing.set()
    producer.join(60)
    with traffic.changed:
        produced = list(traffic.produced)
    traffic.wait_for(lambda: len(traffic.consumed) >= len(produced) or traffic.errors,
                     "the consumer to catch up")
    traffic.stop_consuming.set()
    consumer.join(60)

    assert not producer.is_alive() and not consumer.is_alive()
    assert traffic.errors == []
    # Writes to a queue being moved were held, never refused.
    assert traffic.failed_posts == [] and traffic.failed_deletes == []
    left = remaining(server, project)
    counts = Counter(traffic.consumed)
    assert [body for body, n in counts.items() if n > 1] == []
    assert set(left).isdisjoint(counts)
    assert sorted([*counts, *left]) == sorted(produced)

    # The queues, their metadata and the subscription live on the other pools.
    placed = asyncio.run(placements(deployment.control_url, project))
    assert set(placed.values()) <= {"red", "pg"}, placed
    with client(server, project) as http:
        assert http.get(f"/v2/queues/{QUEUES[0]}").json()["team"] == QUEUES[0]
        subs = http.get("/v2/queues/watched/subscriptions").json()["subscriptions"]
        assert [s["subscriber"] for s in subs] == ["mailto:ops@example.com"]
    assert asyncio.run(queues_left_on(deployment.urls["lite"], project)) == 0

    def lite_line() -> str:
        listed = deployment.cli("list").stdout.splitlines()
        return next(line for line in listed if line.startswith("lite"))

    assert lite_line().endswith("draining")
    assert deployment.cli("drain", "lite", "--cancel").returncode == 0
    assert not lite_line().endswith("draining")
    removed = deployment.cli("remove", "lite")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "lite" not in deployment.cli("list").stdout
