"""The fault-injecting driver wrapper (tidings.storage.faulty).

In-process: URL parsing, the seeded plan, ``before``/``after`` modes and
latency. Then real `tidings serve` processes on ``faulty+<backend>`` URLs:
every injected failure answers 503 with a JSON error (never a 500), and
whatever was written before a failure (``mode=after``: the write commits,
then the client hears 503) leaves the storage consistent, as read back
through a clean server on the same storage: a batch post is all there or
not at all, a claim holds its whole batch of messages, a bulk delete with a
claim removes all its messages or none.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support import postgres_server, redis_server
from tests.support.server import ServerProcess
from tidings import errors
from tidings.storage.base import NewMessage
from tidings.storage.faulty import FaultPlan, FaultyDriver, InjectedFault, split_url
from tidings.storage.registry import driver_from_url


def claim_of(message: dict) -> str | None:
    """The claim a listed message is under: its href names it (as in Zaqar)."""
    return parse_qs(urlsplit(message["href"]).query).get("claim_id", [None])[0]


# --- in process -----------------------------------------------------------------


def test_url_options_are_the_wrappers_and_the_rest_reaches_the_inner_driver() -> None:
    inner, plan = split_url("faulty+sqlite:////tmp/x.db?error_rate=0.2&latency_ms=5"
                            "&ops=messages.post,claims.create&seed=1&sync=normal")
    assert inner == "sqlite:////tmp/x.db?sync=normal"
    assert (plan.error_rate, plan.latency_ms, plan.ops, plan.seed, plan.mode) == (
        0.2, (5.0, 5.0), ("messages.post", "claims.create"), 1, "before")
    inner, plan = split_url("faulty+redis+cluster://127.0.0.1:7000?prefix=t:&mode=after"
                            "&latency_ms=1-4&ops=claims.*")
    assert inner == "redis+cluster://127.0.0.1:7000?prefix=t:"
    assert plan.latency_ms == (1.0, 4.0) and plan.covers("claims.update")
    assert not plan.covers("messages.post")
    for bad in ("ops=messages.pots", "error_rate=2", "mode=sometimes", "error=boom"):
        with pytest.raises(ValueError):
            split_url(f"faulty+sqlite:///x.db?{bad}")


def test_the_seed_replays_the_same_faults() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(error_rate=0.3, mode="mixed", seed=seed)
        return [plan.decide() for _ in range(200)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    counts = Counter(draws(5))
    assert counts["before"] and counts["after"] and counts[None] > 100


async def test_before_writes_nothing_after_writes_then_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/unit.db"
    for mode, stored in (("before", 0), ("after", 2)):
        driver = driver_from_url(f"faulty+{url}?error_rate=1&ops=messages.post&mode={mode}")
        assert isinstance(driver, FaultyDriver) and driver.name == "sqlite"
        await driver.open()
        try:
            with pytest.raises(errors.ServiceUnavailable, match="injected"):
                await driver.messages.post("p", mode, [NewMessage(1, 60), NewMessage(2, 60)], "c")
            # Operations not named pass straight through.
            assert (await driver.queues.stats("p", mode)).total == stored
            assert driver.plan.injected == {f"messages.post:{mode}": 1}
            assert (await driver.health())["faults"]["injected"] == {f"messages.post:{mode}": 1}
        finally:
            await driver.close()


async def test_latency_and_timeouts(tmp_path: Path) -> None:
    url = f"faulty+sqlite:///{tmp_path}/slow.db?latency_ms=50&ops=queues.stats"
    driver = driver_from_url(url)
    await driver.open()
    try:
        began = time.monotonic()
        await driver.queues.stats("p", "q")
        assert time.monotonic() - began >= 0.05
        began = time.monotonic()
        await driver.queues.list("p", marker=None, limit=10, detailed=False)  # not named
        assert time.monotonic() - began < 0.05
    finally:
        await driver.close()
    driver = driver_from_url(f"faulty+sqlite:///{tmp_path}/slow.db?error_rate=1&error=timeout"
                             "&hang_ms=200&ops=queues.*")
    await driver.open()
    try:
        began = time.monotonic()
        with pytest.raises(InjectedFault, match="did not answer"):
            await driver.queues.create("p", "q", {})
        assert time.monotonic() - began >= 0.2
    finally:
        await driver.close()


# --- real servers ---------------------------------------------------------------


@contextmanager
def storage_for(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/faulty.db"
    elif backend == "redis":
        server = redis_server.session_redis()
        yield f"{server.url}?prefix={redis_server.unique_prefix()}"
    else:
        pg = postgres_server.shared_server()
        database = f"faulty_{uuid.uuid4().hex[:10]}"
        pg.psql(f"CREATE DATABASE {database}")
        yield pg.url(database, max_size=5)


def faulty_url(storage: str, options: str) -> str:
    return f"faulty+{storage}{'&' if '?' in storage else '?'}{options}"


def headers(project: str) -> dict[str, str]:
    return {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}


def error_problem(resp: httpx.Response) -> str | None:
    """What is wrong with a 503's body, or None."""
    try:
        body = resp.json()
    except ValueError:
        return f"503 without JSON: {resp.text[:200]!r}"
    if not (isinstance(body, dict) and isinstance(body.get("title"), str)
            and isinstance(body.get("description"), str) and body["description"]):
        return f"503 body lacks title/description: {body!r}"
    return None


class Recorder:
    """Statuses by operation, and anything that is not allowed."""

    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.problems: list[str] = []

    def see(self, op: str, resp: httpx.Response, allowed: tuple[int, ...]) -> int:
        self.statuses[(op, resp.status_code)] += 1
        if resp.status_code == 503:
            problem = error_problem(resp)
            if problem:
                self.problems.append(f"{op}: {problem}")
        elif resp.status_code not in allowed:
            self.problems.append(f"{op}: {resp.status_code} {resp.text[:200]}")
        return resp.status_code


def list_all(http: httpx.Client, queue: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = f"/v2/queues/{queue}/messages"
    params: dict[str, Any] | None = {"echo": "true", "include_claimed": "true", "limit": 20}
    for _ in range(1000):
        resp = http.get(url, params=params)  # type: ignore[arg-type]
        assert resp.status_code == 200, resp.text
        page = resp.json()
        if not page["messages"]:
            return found
        found.extend(page["messages"])
        url = next(link["href"] for link in page["links"] if link["rel"] == "next")
        params = None
    raise AssertionError("the listing did not end")


BATCH = 5
BATCHES = 40
CLAIMS = 20
QUEUE = "faulty"


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_injected_failures_answer_503_and_leave_consistent_state(
        backend: str, tmp_path: Path) -> None:
    project = f"faulty-{uuid.uuid4().hex[:8]}"
    with storage_for(backend, tmp_path) as storage:
        url = faulty_url(storage, "error_rate=0.4&mode=mixed&seed=11"
                                  "&ops=messages.post,claims.create,messages.bulk_delete")
        faulty = ServerProcess(storage=url, log_path=tmp_path / "faulty.log").start()
        seen = Recorder()
        batches: dict[str, list[str] | None] = {}  # marker -> acknowledged ids, or None (503)
        claims: dict[str, list[str]] = {}  # claim id -> message ids, as answered
        deletes: dict[str, bool] = {}  # claim id -> bulk delete answered 204
        try:
            with httpx.Client(base_url=faulty.url, headers=headers(project), timeout=10) as http:
                # 1. Batch posts.
                for n in range(BATCHES):
                    marker = f"b{n}"
                    resp = http.post(f"/v2/queues/{QUEUE}/messages", json={"messages": [
                        {"body": {"batch": marker, "i": i}, "ttl": 3600} for i in range(BATCH)]})
                    if seen.see("post", resp, (201,)) == 201:
                        batches[marker] = [h.rsplit("/", 1)[1] for h in resp.json()["resources"]]
                    else:
                        batches[marker] = None
                # 2. Claims of 5 (fewer than the messages stored: each must be full).
                for _ in range(CLAIMS):
                    resp = http.post(f"/v2/queues/{QUEUE}/claims", params={"limit": BATCH},
                                     json={"ttl": 300, "grace": 60})
                    if seen.see("claim", resp, (201, 204)) == 201:
                        claim_id = resp.headers["location"].rsplit("/", 1)[1]
                        claims[claim_id] = [m["id"] for m in resp.json()["messages"]]
                # 3. Bulk deletes with the claim.
                for claim_id, ids in claims.items():
                    resp = http.delete(f"/v2/queues/{QUEUE}/messages",
                                       params={"ids": ",".join(ids), "claim_ids": claim_id})
                    deletes[claim_id] = seen.see("delete", resp, (204,)) == 204
                health = http.get("/v2/health").json()
        finally:
            faulty.stop()

        # Read it all back through a clean server on the same storage.
        clean = ServerProcess(storage=storage, log_path=tmp_path / "clean.log").start()
        try:
            with httpx.Client(base_url=clean.url, headers=headers(project), timeout=10) as http:
                stored = list_all(http, QUEUE)
                claim_views = {}
                for claim_id in {claim_of(m) for m in stored if claim_of(m)}:
                    resp = http.get(f"/v2/queues/{QUEUE}/claims/{claim_id}")
                    assert resp.status_code == 200, resp.text
                    claim_views[claim_id] = sorted(m["id"] for m in resp.json()["messages"])
        finally:
            clean.stop()

    injected = health["details"]["faults"]["injected"]
    print(f"\n{backend}: statuses {dict(sorted(seen.statuses.items()))}; injected {injected}; "
          f"{len(stored)} messages stored, {len(claim_views)} claims still holding messages")
    assert not seen.problems, seen.problems[:10]
    assert not any(status == 500 for _, status in seen.statuses)
    # Both kinds of failure happened on every faulted operation.
    for op in ("messages.post", "claims.create"):
        assert injected.get(f"{op}:before") and injected.get(f"{op}:after"), injected
    assert injected.get("messages.bulk_delete:before") or injected.get(
        "messages.bulk_delete:after"), injected

    # Posts: a batch is whole or absent; acknowledged ones with their ids.
    # Claims take 5 from the head of the queue, so with whole batches every
    # claim is one whole batch, and a bulk delete removes whole batches.
    stored_ids = {m["id"] for m in stored}
    by_batch: dict[str, set[int]] = defaultdict(set)
    for message in stored:
        by_batch[message["body"]["batch"]].add(message["body"]["i"])
    assert set(by_batch) <= set(batches), "a message from no batch"
    for marker, present in by_batch.items():
        assert present == set(range(BATCH)), f"batch {marker} is half there: {sorted(present)}"
    # A bulk delete answered 503 may have happened (mode=after): its claim's
    # messages may be gone, but then all of them.
    tried = {mid for ids in claims.values() for mid in ids}
    for marker, ids in batches.items():
        if ids is not None:
            assert set(ids) <= stored_ids | tried, f"acknowledged batch {marker} lost"
            assert set(ids) <= stored_ids or not set(ids) & stored_ids, \
                f"batch {marker} half deleted"
    written_anyway = [k for k, v in batches.items() if v is None and k in by_batch]
    assert written_anyway, "mode=after never left a refused batch written"

    # Claims: every claim still holding messages holds a full batch of them,
    # also those whose creation answered 503 (written, then failed).
    for claim_id, ids in claim_views.items():
        assert len(ids) == BATCH, f"claim {claim_id} holds {len(ids)} messages"
        holders = [m for m in stored if claim_of(m) == claim_id]
        assert {m["id"] for m in holders} == set(ids), f"claim {claim_id} is half applied"
        assert len({m["body"]["batch"] for m in holders}) == 1, f"claim {claim_id} straddles"
    unknown_claims = set(claim_views) - set(claims)
    assert unknown_claims, "mode=after never left a refused claim in place"

    # Bulk deletes: all of a claim's messages went, or none.
    for claim_id, ids in claims.items():
        present = set(ids) & stored_ids
        assert present in (set(), set(ids)), f"bulk delete of {claim_id} half done"
        if deletes[claim_id]:
            assert not present, f"bulk delete of {claim_id} answered 204 but kept {present}"


# Every public operation once or more, with all storage operations faulted:
# the answers are what they would be, or a 503 with a JSON error; never a 500.
SWEEP: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v2/queues/{q}", {"json": {"_max_messages_post_size": 65536}}),
    ("GET", "/v2/queues", {}),
    ("GET", "/v2/queues/{q}", {}),
    ("GET", "/v2/queues/{q}/stats", {}),
    ("POST", "/v2/queues/{q}/messages", {"json": {"messages": [{"body": 1}, {"body": 2}]}}),
    ("GET", "/v2/queues/{q}/messages", {"params": {"echo": "true"}}),
    ("GET", "/v2/queues/{q}/messages/{m}", {}),
    ("POST", "/v2/queues/{q}/claims", {"json": {"ttl": 60, "grace": 60}}),
    ("GET", "/v2/queues/{q}/claims/{c}", {}),
    ("PATCH", "/v2/queues/{q}/claims/{c}", {"json": {"ttl": 120}}),
    ("DELETE", "/v2/queues/{q}/messages/{m}", {"params": {"claim_id": "{c}"}}),
    ("DELETE", "/v2/queues/{q}/claims/{c}", {}),
    ("DELETE", "/v2/queues/{q}/messages", {"params": {"pop": 1}}),
    ("POST", "/v2/queues/{q}/subscriptions",
     {"json": {"subscriber": "http://127.0.0.1:9/hook", "ttl": 3600}}),
    ("GET", "/v2/queues/{q}/subscriptions", {}),
    ("POST", "/v2/queues/{q}/purge", {"json": {"resource_types": ["messages"]}}),
    ("DELETE", "/v2/queues/{q}", {}),
    ("GET", "/v2/health", {}),
]


def test_no_operation_answers_500_when_every_storage_call_may_fail(tmp_path: Path) -> None:
    url = f"faulty+sqlite:///{tmp_path}/sweep.db?error_rate=0.35&mode=mixed&seed=3&ops=*"
    server = ServerProcess(storage=url, log_path=tmp_path / "sweep.log", env={
        "TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.0/8"}).start()
    statuses: Counter[int] = Counter()
    problems = []
    try:
        with httpx.Client(base_url=server.url, headers=headers("sweep"), timeout=10) as http:
            for round_ in range(10):
                queue = f"q{round_ % 3}"
                found = {"m": "0" * 16, "c": "0" * 24}  # ids from this round's answers
                for method, path, kwargs in SWEEP:
                    if "params" in kwargs:
                        kwargs = {**kwargs, "params": {k: str(v).format(**found) for k, v
                                                       in kwargs["params"].items()}}
                    resp = http.request(method, path.format(q=queue, **found), **kwargs)
                    statuses[resp.status_code] += 1
                    if resp.status_code == 201 and path.endswith("/messages"):
                        found["m"] = resp.json()["resources"][0].rsplit("/", 1)[1]
                    if resp.status_code == 201 and path.endswith("/claims"):
                        found["c"] = resp.headers["location"].rsplit("/", 1)[1]
                        found["m"] = resp.json()["messages"][0]["id"]
                    if resp.status_code >= 500 and (resp.status_code != 503
                                                    or error_problem(resp)):
                        problems.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    finally:
        server.stop()
    print(f"\nsweep statuses {dict(sorted(statuses.items()))}")
    assert not problems, problems[:10]
    assert statuses[503] > 0 and sum(v for k, v in statuses.items() if k < 400) > 0
    log = (tmp_path / "sweep.log").read_text(errors="replace")
    assert "unexpected error" not in log, log[-3000:]
