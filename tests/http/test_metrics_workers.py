"""GET /metrics of ``serve --workers 2`` reports the whole server.

A known workload runs over many connections, so both workers serve it (seen
in the snapshot files each worker writes, named by its pid). Whichever
worker answers, /metrics must reach exactly the workload's request and
message counts within the snapshot interval, no counter may ever go down
between two scrapes, and killing a worker (the supervisor starts another)
must lose nothing it had counted.
"""

from __future__ import annotations

import os
import signal
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerProcess
from tidings.config import WORKER_METRICS_ENV
from tidings.metrics.snapshots import RETIRED, WORKER_SUFFIX, Snapshot

QUEUE = "/v2/queues/{queue_name}"
REQUESTS = "tidings_http_requests_total"
# The routes the workload uses; pings and scrapes are counted too, but
# their number depends on readiness polls and on the waits below.
WORKLOAD_ROUTES = {QUEUE, QUEUE + "/messages", QUEUE + "/claims",
                   QUEUE + "/messages/{message_id}", "unmatched"}
COUNTERS = ("tidings_messages_posted_total", "tidings_messages_claimed_total")
DEADLINE = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# httpx builds an SSL context per client (tens of ms) unless given one.
TLS = ssl.create_default_context()


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Observer:
    """Scrapes /metrics, each time on a new connection (any worker may
    answer), and checks that no counter, bucket, count or sum went down
    since the scrape before."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last: Samples = {}
        self.scrapes = 0

    def scrape(self) -> Samples:
        resp = httpx.get(self.url + "/metrics", timeout=10, verify=TLS)
        assert resp.status_code == 200, resp.text
        samples = parse(resp.text)
        for key, before in self.last.items():
            name = key[0]
            if name.endswith(("_total", "_bucket", "_count", "_sum")):
                assert samples.get(key, 0.0) >= before, (key, before, samples.get(key))
        self.last = samples
        self.scrapes += 1
        return samples

    def wait_for(self, done: Callable[[Samples], bool], what: str) -> Samples:
        deadline = time.monotonic() + DEADLINE
        while True:
            samples = self.scrape()
            if done(samples):
                return samples
            assert time.monotonic() < deadline, f"{what}: not reached in {DEADLINE}s"
            time.sleep(0.1)


class Workload:
    """Requests on new connections from several threads; it keeps what was
    answered: (method, route, status) counts and the messages moved."""

    def __init__(self, url: str, project: str) -> None:
        self.url = url
        self.project = project
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.posted = 0
        self.claimed = 0
        self.deleted = 0

    def _call(self, method: str, path: str, route: str, **kw: Any) -> httpx.Response:
        headers = {"X-Project-ID": self.project, "Client-ID": str(uuid.uuid4())}
        # One connection per request: the kernel hands each to whichever
        # worker accepts first.
        with httpx.Client(base_url=self.url, headers=headers, timeout=20, verify=TLS) as http:
            resp = http.request(method, path, **kw)
        assert resp.status_code < 500, (method, path, resp.status_code, resp.text)
        self.requests[(method, route, str(resp.status_code))] += 1
        return resp

    def create(self, queues: list[str]) -> None:
        for queue in queues:
            assert self._call("PUT", f"/v2/queues/{queue}", QUEUE).status_code == 201

    def cycle(self, queue: str) -> None:
        """Post two messages, claim up to two, delete what was claimed, and
        ask for a route that does not exist."""
        resp = self._call("POST", f"/v2/queues/{queue}/messages", QUEUE + "/messages",
                          json={"messages": [{"body": {"n": 1}}, {"body": {"n": 2}}]})
        assert resp.status_code == 201
        self.posted += 2
        resp = self._call("POST", f"/v2/queues/{queue}/claims?limit=2", QUEUE + "/claims",
                          json={"ttl": 300, "grace": 60})
        messages = resp.json()["messages"] if resp.status_code == 201 else []
        self.claimed += len(messages)
        for message in messages:
            deleted = self._call("DELETE", message["href"], QUEUE + "/messages/{message_id}")
            assert deleted.status_code == 204
            self.deleted += 1
        assert self._call("GET", "/v2/no/such/route", "unmatched").status_code == 404

    def run(self, queues: list[str], cycles: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(self.cycle, queues[i % len(queues)])
                           for i in range(cycles)]:
                future.result()

    def matches(self, samples: Samples) -> bool:
        got = {(dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): value
               for (name, labels), value in samples.items()
               if name == REQUESTS and dict(labels)["route"] in WORKLOAD_ROUTES}
        return (got == {key: float(count) for key, count in self.requests.items()}
                and samples.get(("tidings_messages_posted_total", frozenset())) == self.posted
                and samples.get(("tidings_messages_claimed_total", frozenset())) == self.claimed
                and samples.get(("tidings_messages_deleted_total",
                                 frozenset({("via", "delete")}))) == self.deleted)


def metrics_dir(server: ServerProcess) -> Path:
    """Where the workers write their snapshots: the supervisor hands it to
    them in their environment."""
    for pid in server.worker_pids():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for entry in environ:
            key, _, value = entry.partition(b"=")
            if key.decode() == WORKER_METRICS_ENV:
                return Path(value.decode())
    raise AssertionError("no worker names a metrics directory")


def requests_by_worker(directory: Path) -> dict[int, float]:
    """HTTP requests each worker's snapshot counts, by pid."""
    counts = {}
    for path in directory.glob("*" + WORKER_SUFFIX):
        try:
            snapshot = msgspec.msgpack.decode(path.read_bytes(), type=Snapshot)
        except FileNotFoundError:
            continue  # folded meanwhile
        pid = int(path.name.split("-", 1)[0])
        # Snapshots name families as registered: no _total suffix.
        counts[pid] = sum(value for _, value in
                          snapshot.counters.get(REQUESTS.removesuffix("_total"), []))
    return counts


def wait_for_workers(server: ServerProcess, count: int, other_than: set[int] = frozenset()
                     ) -> list[int]:
    deadline = time.monotonic() + DEADLINE
    while True:
        pids = server.worker_pids()
        if len(pids) == count and not set(pids) & set(other_than):
            return pids
        assert time.monotonic() < deadline, f"workers: {pids}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("metrics-workers")
    proc = ServerProcess(storage=f"sqlite:///{base}/tidings.db", workers=2,
                         log_path=base / "server.log",
                         env={"TIDINGS_SQLITE_SYNC": "off",
                              "TIDINGS_LOGGING__ACCESS_LOG": "false",
                              "TIDINGS_METRICS__SAMPLE_INTERVAL": "0.2"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_metrics_sum_every_worker_and_survive_a_killed_one(
        workers_server: ServerProcess) -> None:
    server = workers_server
    first = wait_for_workers(server, 2)
    directory = metrics_dir(server)
    observer = Observer(server.url)
    workload = Workload(server.url, f"mw-{uuid.uuid4().hex[:8]}")
    queues = ["a", "b", "c"]
    workload.create(queues)

    # Rounds until both workers served some of it (the kernel decides who
    # accepts; more rounds only add to the known totals).
    deadline = time.monotonic() + DEADLINE
    while True:
        workload.run(queues, 24)
        observer.scrape()
        served = requests_by_worker(directory)
        if all(served.get(pid, 0) > 1 for pid in first):
            break
        assert time.monotonic() < deadline, f"one worker served everything: {served}"
    observer.wait_for(workload.matches, "the workload's counts")
    assert workload.posted and workload.claimed and workload.deleted

    # Kill one worker: the supervisor starts another. Everything it counted
    # was in its snapshot (the totals above were read from it), so nothing
    # goes missing, and its file is folded into the retired one.
    killed = first[0]
    os.kill(killed, signal.SIGKILL)
    second = wait_for_workers(server, 2, other_than={killed})
    assert workload.matches(observer.scrape())
    # The new worker writes its first snapshot once its app has started.
    observer.wait_for(lambda _: set(requests_by_worker(directory)) >= set(second),
                      "the new worker's first snapshot")
    observer.wait_for(lambda _: not any(path.name.startswith(f"{killed}-")
                                        for path in directory.iterdir()),
                      "the killed worker's snapshot folded")
    assert (directory / RETIRED).exists()
    assert workload.matches(observer.scrape())

    # More work on the new pair of workers adds to the old totals.
    workload.run(queues, 24)
    final = observer.wait_for(workload.matches, "the totals after the restart")
    assert set(requests_by_worker(directory)) == set(second)  # the killed one folded
    # The scrapes themselves are counted too, never more than were made
    # (the last one is counted after it answered).
    scrapes = final.get((REQUESTS, frozenset({("method", "GET"), ("route", "/metrics"),
                                              ("status", "200")})), 0.0)
    assert 0 < scrapes < observer.scrapes
    # Latency histograms count the same requests.
    posts = final[("tidings_http_request_duration_seconds_count",
                   frozenset({("method", "POST"), ("route", QUEUE + "/messages")}))]
    assert posts == sum(count for (method, route, _), count in workload.requests.items()
                        if method == "POST" and route == QUEUE + "/messages")


def test_depth_gauges_come_from_the_latest_sample(workers_server: ServerProcess) -> None:
    project = f"depth-{uuid.uuid4().hex[:8]}"
    headers = {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}
    resp = httpx.post(workers_server.url + "/v2/queues/deep/messages", headers=headers,
                      timeout=10, json={"messages": [{"body": i} for i in range(5)]})
    assert resp.status_code == 201
    observer = Observer(workers_server.url)
    free = ("tidings_queue_messages",
            frozenset({("project", project), ("queue", "deep"), ("state", "free")}))
    observer.wait_for(lambda samples: samples.get(free) == 5, "the depth of the queue")
    # Emptied: the next sample of the worker that saw the post says so.
    resp = httpx.delete(workers_server.url + "/v2/queues/deep/messages?pop=5",
                        headers=headers, timeout=10)
    assert resp.status_code == 200 and len(resp.json()["messages"]) == 5
    observer.wait_for(lambda samples: samples.get(free, 0.0) == 0, "the emptied queue")


def test_supervisor_removes_the_directory_when_it_stops(
        tmp_path: Path) -> None:
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db", workers=2,
                         log_path=tmp_path / "server.log")
    proc.start()
    try:
        wait_for_workers(proc, 2)
        directory = metrics_dir(proc)
        assert directory.is_dir()
    finally:
        proc.stop()
    assert not directory.exists()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
