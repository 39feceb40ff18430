"""Real `tidings serve` processes on real Redis and PostgreSQL servers.

- ``--workers 2`` on one backend: competing consumers spread over both
  worker processes receive every message exactly once.
- Backend faults: the backend hangs (SIGSTOP) and dies (SIGKILL /
  ``pg_ctl stop -m immediate``) under a steady load of posts, claims and
  listings. Requests answer 503 with a JSON error within the configured
  timeouts (never a 500, never a hang), health reports the storage
  unreachable and ping answers 503; once the backend is back, requests
  succeed again without restarting Tidings, and no batch post is half
  written.
- ``GET /v2/health``: driver name, reachability and per-queue counts.
- A Redis that does not persist is refused at start, unless
  ``?unreliable=true``.

Every server here is a real process on a free loopback port; the backends
are the session's shared ones (a fresh key prefix or database), except
where the test stops them, which get their own.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.support import postgres_server, redis_server
from tests.support.ports import free_port
from tests.support.server import ServerProcess

BACKENDS = ["redis", "postgres"]


def headers(project: str) -> dict[str, str]:
    return {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}


def new_project(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


def server_log(server: ServerProcess) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")


def shared_backend_url(backend: str) -> str:
    """A fresh namespace on the session's shared server of that kind."""
    if backend == "redis":
        return f"{redis_server.session_redis().url}?prefix={redis_server.unique_prefix()}"
    pg = postgres_server.shared_server()
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    return pg.url(database, max_size=10)


# --- two worker processes on one backend ------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", *BACKENDS])
def multi_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp(f"workers-{request.param}")
    storage = (f"sqlite:///{base}/shared.db" if request.param == "sqlite"
               else shared_backend_url(request.param))
    proc = ServerProcess(storage=storage, workers=2, log_path=base / "server.log")
    proc.start()
    proc.backend = request.param  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = server.worker_pids()
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


MESSAGES = 2000
CONSUMERS = 8
POST_BATCH = 100


def test_two_workers_competing_consumers_receive_each_message_once(
        multi_server: ServerProcess) -> None:
    server = multi_server
    project = new_project("workers")
    queue = "jobs"
    workers = wait_for_workers(server, 2)
    assert len(workers) == 2, f"expected 2 worker processes, found {workers}"

    # httpx builds an SSL context per client (~45 ms) unless given one.
    tls = ssl.create_default_context()

    def client() -> httpx.Client:
        return httpx.Client(base_url=server.url, timeout=20, headers=headers(project),
                            verify=tls)

    posted: list[str] = []
    with client() as producer:
        started = time.monotonic()
        for start in range(0, MESSAGES, POST_BATCH):
            batch = [{"body": {"seq": seq}, "ttl": 3600}
                     for seq in range(start, start + POST_BATCH)]
            resp = producer.post(f"/v2/queues/{queue}/messages", json={"messages": batch})
            assert resp.status_code == 201, resp.text
            posted.extend(href.rsplit("/", 1)[1] for href in resp.json()["resources"])
        post_seconds = time.monotonic() - started
    assert len(set(posted)) == MESSAGES

    received: list[list[tuple[str, int]]] = [[] for _ in range(CONSUMERS)]
    errors: list[str] = []
    start_line = threading.Barrier(CONSUMERS)

    def consume(index: int) -> None:
        mine = received[index]
        try:
            start_line.wait(10)
            while True:
                # A new connection per claim and its deletes: the kernel
                # hands each to whichever worker accepts first, so both
                # processes serve every consumer.
                with client() as http:
                    resp = http.post(f"/v2/queues/{queue}/claims?limit=10",
                                     json={"ttl": 600, "grace": 60})
                    if resp.status_code == 204:
                        return  # nothing left that is not held by someone
                    if resp.status_code != 201:
                        errors.append(f"claim: {resp.status_code} {resp.text}")
                        return
                    claim_id = resp.headers["location"].rsplit("/", 1)[1]
                    messages = resp.json()["messages"]
                    if not 0 < len(messages) <= 10:
                        errors.append(f"claim of {len(messages)} messages")
                    for message in messages:
                        if not message["href"].endswith(f"?claim_id={claim_id}"):
                            errors.append(f"message {message['id']} not in claim {claim_id}")
                        mine.append((message["id"], message["body"]["seq"]))
                        resp = http.delete(f"/v2/queues/{queue}/messages/{message['id']}",
                                           params={"claim_id": claim_id})
                        if resp.status_code != 204:
                            errors.append(f"delete: {resp.status_code} {resp.text}")
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(exc))

    before = {pid: cpu_ticks(pid) for pid in workers}
    started = time.monotonic()
    threads = [threading.Thread(target=consume, args=(i,)) for i in range(CONSUMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    consume_seconds = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a consumer is stuck"
    assert not errors, errors[:10]
    used = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
    print(f"\n{server.backend}: posted {MESSAGES} in {post_seconds:.2f}s, "  # type: ignore[attr-defined]
          f"consumed in {consume_seconds:.2f}s, worker CPU ticks {used}")

    everything = [item for mine in received for item in mine]
    counts = Counter(message_id for message_id, _ in everything)
    duplicates = {message_id: n for message_id, n in counts.items() if n > 1}
    assert not duplicates, f"received more than once: {list(duplicates.items())[:10]}"
    assert sorted(counts) == sorted(posted)
    assert sorted(seq for _, seq in everything) == list(range(MESSAGES))
    assert all(received), [len(mine) for mine in received]

    # Both workers did a share of the work: the consumers' ~2,200 requests
    # cost each of them CPU time (an idle worker uses next to none).
    assert all(ticks >= 5 for ticks in used.values()), f"CPU ticks per worker: {used}"
    assert server.worker_pids() == workers, "a worker process died or was replaced"

    with client() as http:
        stats = http.get(f"/v2/queues/{queue}/stats").json()["messages"]
        assert (stats["total"], stats["claimed"], stats["free"]) == (0, 0, 0)
        listing = http.get(f"/v2/queues/{queue}/messages",
                           params={"echo": "true", "include_claimed": "true"})
        assert listing.status_code == 200
        assert listing.json()["messages"] == []
    assert "unexpected error" not in server_log(server)


def test_a_long_poll_wakes_when_a_post_reaches_the_other_worker(
        multi_server: ServerProcess) -> None:
    """A claim waiting (``wait=20``) in one worker is answered as soon as a
    post lands, whichever worker takes the post: each round opens new
    connections, which the kernel hands to either worker, so most rounds
    cross between the two (a wake that crossed nothing would take the
    whole wait)."""
    project = new_project("longpoll")
    workers = wait_for_workers(multi_server, 2)
    assert len(workers) == 2, f"expected 2 worker processes, found {workers}"
    for round_ in range(6):
        queue = f"lp-{round_}"
        answer: dict[str, Any] = {}

        def claim(queue: str = queue, answer: dict[str, Any] = answer) -> None:
            with httpx.Client(base_url=multi_server.url, timeout=30,
                              headers=headers(project)) as http:
                started = time.monotonic()
                resp = http.post(f"/v2/queues/{queue}/claims", params={"wait": 20},
                                 json={"ttl": 60})
                answer["status"] = resp.status_code
                answer["seconds"] = time.monotonic() - started

        waiter = threading.Thread(target=claim)
        waiter.start()
        # The post may still come first; then the claim finds the message
        # at once, which passes as well.
        time.sleep(0.3)
        with httpx.Client(base_url=multi_server.url, timeout=10,
                          headers=headers(project)) as http:
            resp = http.post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"body": round_, "ttl": 600}]})
            assert resp.status_code == 201, resp.text
        waiter.join(30)
        assert answer.get("status") == 201, answer
        assert answer["seconds"] < 10, f"round {round_}: the claim waited {answer['seconds']:.1f}s"


def test_health_reports_driver_reachability_and_counts(multi_server: ServerProcess) -> None:
    project = new_project("health")
    with httpx.Client(base_url=multi_server.url, timeout=10, headers=headers(project)) as http:
        for queue, count in (("alpha", 3), ("beta", 5)):
            resp = http.post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"body": i, "ttl": 600} for i in range(count)]})
            assert resp.status_code == 201, resp.text
        # Either worker may answer: both read the same storage.
        for _ in range(4):
            resp = http.get("/v2/health")
            assert resp.status_code == 200, resp.text
            health = resp.json()
            assert health["driver"] == multi_server.backend  # type: ignore[attr-defined]
            assert health["storage_reachable"] is True
            assert health["details"]["storage_reachable"] is True
            # Under noauth nobody is an admin: totals only, no project named.
            assert project not in resp.text
            totals = health["details"]["message_totals"]
            assert totals["queues"] >= 2 and totals["messages"] >= 8
        assert http.get("/v2/ping").status_code == 204


# --- backend faults -------------------------------------------------------------


@dataclass
class Backend:
    """A backend server that the test stops, hangs and starts again."""

    kind: str
    url: str
    kill: Callable[[], None]
    start: Callable[[], None]
    pause: Callable[[], None]
    resume: Callable[[], None]


def _children(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(params=BACKENDS)
def own_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "redis":
        # appendfsync always: what Redis acknowledged is on disk before the
        # reply, so a SIGKILL loses nothing a client was told was stored.
        redis = redis_server.RedisServer(extra=("--appendfsync", "always")).start()

        def kill() -> None:
            assert redis.process is not None
            redis.process.kill()
            redis.process.wait(10)

        try:
            yield Backend("redis", f"{redis.url}?socket_timeout=1&socket_connect_timeout=1",
                          kill=kill, start=redis.start, pause=redis.pause, resume=redis.resume)
        finally:
            redis.cleanup()
    else:
        pg = postgres_server.new_server()
        paused: list[int] = []

        def pause() -> None:
            # The postmaster first: stopped, it forks no new backends.
            postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGSTOP)
            paused[:] = [postmaster, *_children(postmaster)]
            for pid in paused[1:]:
                os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            for pid in paused:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

        try:
            yield Backend("postgres", pg.url("postgres", connect_timeout=1, command_timeout=1),
                          kill=lambda: pg.stop("immediate"), start=pg.start,
                          pause=pause, resume=resume)
        finally:
            resume()
            pg.destroy()


# A request must be answered within the storage timeouts (1 s to connect,
# 1 s per command) plus some slack for a loaded machine.
ANSWER_WITHIN = 5.0
BATCH = 5


class Result(NamedTuple):
    began: float  # time.monotonic()
    ended: float
    op: str
    status: int


@dataclass
class Load:
    """Posts (batches of 5 with a marker), claims and listings in a loop."""

    url: str
    project: str
    threads: int = 3
    queue: str = "faults"
    # batch marker -> message ids (201), or None (503)
    batches: dict[str, list[str] | None] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._loop, args=(n,), daemon=True)
                   for n in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers

    def _loop(self, number: int) -> None:
        ops = ("post", "claim", "list")
        with httpx.Client(base_url=self.url, headers=headers(self.project),
                          timeout=3 * ANSWER_WITHIN) as http:
            for step in range(10**9):
                if self.stopping.is_set():
                    return
                op = ops[step % len(ops)]
                marker = f"{number}-{step}"
                began = time.monotonic()
                try:
                    if op == "post":
                        resp = http.post(f"/v2/queues/{self.queue}/messages", json={"messages": [
                            {"body": {"batch": marker, "i": i}, "ttl": 3600}
                            for i in range(BATCH)]})
                    elif op == "claim":
                        resp = http.post(f"/v2/queues/{self.queue}/claims?limit=5",
                                         json={"ttl": 300, "grace": 60})
                    else:
                        resp = http.get(f"/v2/queues/{self.queue}/messages",
                                        params={"echo": "true", "limit": 10})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{op}: no answer: {exc!r}")
                    continue
                ended = time.monotonic()
                elapsed = ended - began
                with self.lock:
                    self.results.append(Result(began, ended, op, resp.status_code))
                if elapsed > ANSWER_WITHIN:
                    self.failures.append(f"{op}: answered after {elapsed:.1f}s")
                ok = {"post": (201,), "claim": (201, 204), "list": (200,)}[op]
                if resp.status_code in ok:
                    if op == "post":
                        self.batches[marker] = [h.rsplit("/", 1)[1]
                                                for h in resp.json()["resources"]]
                elif resp.status_code == 503:
                    problem = check_error_body(resp)
                    if problem:
                        self.failures.append(f"{op}: {problem}")
                    if op == "post":
                        self.batches[marker] = None
                else:
                    self.failures.append(f"{op}: {resp.status_code} {resp.text[:200]}")
                time.sleep(0.01)

    def since(self, moment: float) -> list[Result]:
        with self.lock:
            return [r for r in self.results if r.began >= moment]

    def between(self, start: float, end: float) -> list[Result]:
        """The requests that began and ended within [start, end]."""
        return [r for r in self.since(start) if r.ended <= end]

    def wait_for(self, predicate: Callable[[list[Result]], bool], moment: float,
                 timeout: float) -> float | None:
        """Seconds from ``moment`` until the results since then satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.since(moment)):
                return time.monotonic() - moment
            time.sleep(0.05)
        return None


def check_error_body(resp: httpx.Response) -> str | None:
    """What is wrong with an error response's body, or None."""
    try:
        body = resp.json()
    except ValueError:
        return f"{resp.status_code} without a JSON body: {resp.text[:200]!r}"
    if not (isinstance(body, dict) and isinstance(body.get("title"), str)
            and isinstance(body.get("description"), str) and body["description"]):
        return f"{resp.status_code} body lacks title/description: {body!r}"
    return None


def outage_checks(server: ServerProcess, project: str, backend: str) -> None:
    """During an outage: ping is 503; health answers 200, storage unreachable."""
    with httpx.Client(base_url=server.url, headers=headers(project), timeout=15) as http:
        began = time.monotonic()
        ping = http.get("/v2/ping")
        assert ping.status_code == 503, ping.text
        assert check_error_body(ping) is None, ping.text
        resp = http.get("/v2/health")
        assert time.monotonic() - began < 2 * ANSWER_WITHIN
        assert resp.status_code == 200, resp.text
        health = resp.json()
        assert health["driver"] == backend
        assert health["storage_reachable"] is False
        assert health["details"]["storage_reachable"] is False


def list_everything(server: ServerProcess, project: str, queue: str) -> list[dict[str, Any]]:
    """Every message of the queue, claimed ones included, paging by marker."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=server.url, headers=headers(project), timeout=10) as http:
        url = f"/v2/queues/{queue}/messages?echo=true&include_claimed=true&limit=20"
        while True:
            resp = http.get(url)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            if not page["messages"]:
                return found
            found.extend(page["messages"])
            [link] = [link for link in page["links"] if link["rel"] == "next"]
            url = link["href"]


def posts_succeeded(results: list[Result]) -> int:
    return sum(1 for r in results if r.op == "post" and r.status == 201)


def tally(results: list[Result]) -> Counter[tuple[str, int]]:
    return Counter((r.op, r.status) for r in results)


def test_backend_outage_gives_503_and_recovers_without_half_written_batches(
        own_backend: Backend, tmp_path: Path) -> None:
    backend = own_backend
    server = ServerProcess(storage=backend.url, log_path=tmp_path / "server.log").start()
    project = new_project("fault")
    load = Load(server.url, project)
    threads = load.run()
    try:
        # Healthy.
        time.sleep(0.3)

        # 1. The backend hangs: its socket is open but nothing answers.
        backend.pause()
        hung_at = time.monotonic()
        time.sleep(2.5)
        resuming_at = time.monotonic()
        backend.resume()
        resumed_at = time.monotonic()
        # Requests wholly inside the hang: they timed out, the hang outlasting
        # the timeouts.
        hung = load.between(hung_at, resuming_at)
        recovered_after_hang = load.wait_for(lambda rs: posts_succeeded(rs) >= 3,
                                             resumed_at, timeout=10)

        # 2. The backend dies (a crash), stays down, and comes back.
        backend.kill()
        killed_at = time.monotonic()
        outage_checks(server, project, backend.kind)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - killed_at)))
        restarting_at = time.monotonic()
        backend.start()
        restarted_at = time.monotonic()
        down = load.between(killed_at, restarting_at)
        recovered = load.wait_for(lambda rs: posts_succeeded(rs) >= 3, restarted_at, timeout=10)
        # Once it answers again, it keeps answering.
        settled_at = time.monotonic() + 0.3
        time.sleep(1.0)
    finally:
        load.stopping.set()
        for t in threads:
            t.join(3 * ANSWER_WITHIN + 5)
    assert not any(t.is_alive() for t in threads), "a load thread hangs"

    try:
        assert not load.failures, load.failures[:10]
        assert hung and all(r.status == 503 for r in hung), \
            f"requests while the backend hung: {tally(hung)}"
        assert recovered_after_hang is not None, "no successful post after the hang ended"
        assert down and all(r.status == 503 for r in down), \
            f"requests while the backend was down: {tally(down)}"
        assert recovered is not None, "Tidings did not recover after the backend restarted"
        assert recovered < 5, f"recovery took {recovered:.1f}s"
        after = load.since(settled_at)
        assert after and all(r.status != 503 for r in after), tally(after)
        assert {r.op for r in after} == {"post", "claim", "list"}, tally(after)

        # Nothing half-written: a batch is there whole or not at all, an
        # acknowledged batch exactly once, with the ids the server gave.
        listed = list_everything(server, project, load.queue)
        ids = Counter(m["id"] for m in listed)
        assert all(n == 1 for n in ids.values()), "a message is listed twice"
        by_batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in listed:
            by_batch[message["body"]["batch"]].append(message)
        assert set(by_batch) <= set(load.batches), "a message of a batch never posted"
        for marker, messages in by_batch.items():
            assert sorted(m["body"]["i"] for m in messages) == list(range(BATCH)), \
                f"batch {marker} is half written: {messages}"
        acknowledged = {k: v for k, v in load.batches.items() if v is not None}
        refused = [k for k, v in load.batches.items() if v is None]
        assert acknowledged and refused
        for marker, message_ids in acknowledged.items():
            assert marker in by_batch, f"acknowledged batch {marker} is lost"
            assert sorted(m["id"] for m in by_batch[marker]) == sorted(message_ids)
        print(f"\n{backend.kind}: {len(acknowledged)} batches acknowledged, {len(refused)} "
              f"refused ({sum(k in by_batch for k in refused)} of those stored anyway); "
              f"recovered {recovered_after_hang:.2f}s after the hang, "
              f"{recovered:.2f}s after the restart")
    finally:
        server.stop()
    log = server_log(server)
    assert "unexpected error" not in log, log[-3000:]


# --- the Redis persistence check, end to end ------------------------------------------


@pytest.fixture(scope="module")
def volatile_redis() -> Iterator[redis_server.RedisServer]:
    redis = redis_server.RedisServer(persistent=False).start()
    yield redis
    redis.cleanup()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_refuses_a_redis_that_does_not_persist(
        volatile_redis: redis_server.RedisServer, workers: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "serve", "--port", str(free_port()),
         "--workers", str(workers), "--storage", volatile_redis.url],
        check=False, capture_output=True, text=True, timeout=30,
        env={**os.environ, "TIDINGS_GC_INTERVAL": "0"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "does not persist" in output, output
    assert "unreliable=true" in output, output


def test_serve_runs_on_a_volatile_redis_when_told_unreliable(
        volatile_redis: redis_server.RedisServer, tmp_path: Path) -> None:
    url = f"{volatile_redis.url}?unreliable=true&prefix={redis_server.unique_prefix()}"
    server = ServerProcess(storage=url, log_path=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, headers=headers(new_project("volatile")),
                          timeout=10) as http:
            resp = http.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
            assert resp.status_code == 201, resp.text
            health = http.get("/v2/health").json()
            assert health["storage_reachable"] is True
            assert health["details"]["persistence"]["persistent"] is False
            assert "durability" not in health["capabilities"]
    finally:
        server.stop()
    assert "does not persist data; running unreliable" in server_log(server)
