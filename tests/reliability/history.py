"""A history checker for queues under crashes, in the spirit of Jepsen's.

Producers post messages with unique payload ids, consumers claim and
delete them, a nemesis kills the server (SIGKILL) and the backend at
random moments from a seeded RNG. Every operation goes into a History:

- posts: invoked, then ``ok`` (201, with the message ids the server gave),
  ``fail`` (a 4xx: the request was refused, nothing should be stored) or
  ``info`` (a transport error, a timeout, a 5xx: unknown whether stored);
- claims and their deliveries: payload id, message id, claim id, time;
- deletes with the claim id: ``ok`` (204) or not;
- faults: each kill and restart, with its time.

After the run the server is restarted once more and the queue drained with
claims; messages still under a live claim (held by a consumer that died, or
by a claim whose answer the crash swallowed: Zaqar's claim TTL is 60 s at
least, and the run does not wait for it) are listed with
``include_claimed=true`` and count as still in the queue.

``check`` then computes:

- lost: acknowledged with 201, never delivered and not in the queue;
- unexpected: delivered or in the queue, never attempted (or with another
  message id than the one the server acknowledged);
- duplicated: delivered more than once, each redelivery explained by a
  claim expiry or a crash in between, or unexplained (a bug: redelivered
  within the claim's TTL with no crash, or after a delete answered 204);
- FIFO violations: within one consumer's sequence of first deliveries, an
  acknowledged message of a producer delivered after a later-acknowledged
  message of the same producer.

``check`` is a pure function of the History, tested on synthetic histories
in test_history.py; ``Workload`` runs the processes.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import httpx

# --- the history ----------------------------------------------------------------


@dataclass
class PostOp:
    process: str
    payload_ids: list[str]
    invoked: float
    completed: float = 0.0
    outcome: str = "info"  # ok | fail | info
    message_ids: list[str] = field(default_factory=list)
    status: int | None = None
    error: str | None = None


@dataclass
class Delivery:
    consumer: str
    payload_id: str | None  # None: a body this workload never writes
    message_id: str
    claim_id: str
    claim_invoked: float
    time: float
    phase: str = "run"  # run | drain


@dataclass
class DeleteOp:
    consumer: str
    message_ids: list[str]
    claim_id: str
    invoked: float
    completed: float = 0.0
    ok: bool = False
    status: int | None = None
    error: str | None = None


@dataclass
class Fault:
    kind: str  # server-kill | server-start | backend-kill | backend-start
    time: float


@dataclass
class Remaining:
    payload_id: str | None
    message_id: str
    claimed: bool


@dataclass
class History:
    posts: list[PostOp] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    deletes: list[DeleteOp] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    remaining: list[Remaining] = field(default_factory=list)
    # (op, status or error class) -> count, for the report.
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, op: str, result: str) -> None:
        with self.lock:
            self.statuses[f"{op} {result}"] += 1

    def add(self, kind: str, item: Any) -> None:
        with self.lock:
            getattr(self, kind).append(item)

    def fault(self, kind: str) -> None:
        self.add("faults", Fault(kind, time.monotonic()))


# --- the checker ----------------------------------------------------------------


@dataclass
class Report:
    driver: str = ""
    seconds: float = 0.0
    seed: int = 0
    operations: int = 0
    posts: int = 0
    claims: int = 0
    deletes: int = 0
    server_kills: int = 0
    backend_kills: int = 0
    attempted: int = 0
    acknowledged: int = 0
    unknown: int = 0
    delivered: int = 0
    still_in_queue: int = 0
    lost: int = 0
    unexpected: int = 0
    duplicated: int = 0
    duplicates_across_crash: int = 0
    duplicates_across_expiry: int = 0
    duplicates_unexplained: int = 0
    redelivered_after_delete: int = 0
    fifo_violations: int = 0
    status_500: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def kills(self) -> int:
        return self.server_kills + self.backend_kills

    def ok(self) -> bool:
        return (self.lost == 0 and self.unexpected == 0 and self.duplicates_unexplained == 0
                and self.redelivered_after_delete == 0)

    def summary(self) -> str:
        return (f"{self.driver}: {self.seconds:.1f}s, {self.operations} operations "
                f"({self.posts} posts, {self.claims} claims, {self.deletes} deletes), "
                f"{self.server_kills} server kills, {self.backend_kills} backend kills; "
                f"{self.attempted} messages attempted, {self.acknowledged} acknowledged, "
                f"{self.delivered} delivered, {self.still_in_queue} still in queue; "
                f"lost {self.lost}, unexpected {self.unexpected}, duplicated {self.duplicated} "
                f"(crash {self.duplicates_across_crash}, expiry {self.duplicates_across_expiry}, "
                f"unexplained {self.duplicates_unexplained}, after a 204 delete "
                f"{self.redelivered_after_delete}), FIFO violations {self.fifo_violations}, "
                f"500s {self.status_500}")

    def to_json(self) -> str:
        data = asdict(self)
        data["kills"] = self.kills
        return json.dumps(data, indent=2, sort_keys=True, default=str)


def check(history: History, *, claim_ttl: float, driver: str = "") -> Report:
    report = Report(driver=driver)
    examples: dict[str, list[Any]] = defaultdict(list)

    def example(kind: str, item: Any) -> None:
        if len(examples[kind]) < 5:
            examples[kind].append(item)

    # What was attempted and what was acknowledged.
    attempted: set[str] = set()
    acked: dict[str, str] = {}  # payload id -> message id
    rank: dict[str, tuple[str, int]] = {}  # payload id -> (producer, ack order)
    per_producer: dict[str, int] = Counter()
    for post in sorted(history.posts, key=lambda p: p.completed):
        attempted.update(post.payload_ids)
        if post.outcome == "ok":
            for payload_id, message_id in zip(post.payload_ids, post.message_ids):
                acked[payload_id] = message_id
                rank[payload_id] = (post.process, per_producer[post.process])
                per_producer[post.process] += 1
    report.attempted = len(attempted)
    report.acknowledged = len(acked)
    report.unknown = sum(len(p.payload_ids) for p in history.posts if p.outcome == "info")

    # Unexpected: never attempted, or another id than the acknowledged one.
    def is_unexpected(payload_id: str | None, message_id: str) -> bool:
        if payload_id is None or payload_id not in attempted:
            return True
        return payload_id in acked and acked[payload_id] != message_id

    seen_unexpected: set[str] = set()
    for item in [*history.deliveries, *history.remaining]:
        if (is_unexpected(item.payload_id, item.message_id)
                and item.message_id not in seen_unexpected):
            seen_unexpected.add(item.message_id)
            example("unexpected", asdict(item))
    report.unexpected = len(seen_unexpected)

    # Lost: acknowledged, neither delivered nor still in the queue.
    # Matched by message id: the acknowledged message itself must show up.
    seen_ids = {d.message_id for d in history.deliveries} | {r.message_id
                                                             for r in history.remaining}
    lost = [p for p, message_id in acked.items() if message_id not in seen_ids]
    delivered_payloads = {d.payload_id for d in history.deliveries}
    report.lost = len(lost)
    for payload_id in lost[:5]:
        example("lost", {"payload_id": payload_id, "message_id": acked[payload_id]})
    report.delivered = len(delivered_payloads - {None})
    report.still_in_queue = len({r.message_id for r in history.remaining})

    # Duplicates, each redelivery classified.
    deleted_ok: dict[tuple[str, str], float] = {}  # (message id, claim id) -> completed
    for op in history.deletes:
        if op.ok:
            for message_id in op.message_ids:
                deleted_ok[(message_id, op.claim_id)] = op.completed
    fault_times = sorted(f.time for f in history.faults if f.kind.endswith("kill"))
    by_message: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in sorted(history.deliveries, key=lambda d: d.time):
        by_message[delivery.message_id].append(delivery)
    for message_id, deliveries in by_message.items():
        if len(deliveries) < 2:
            continue
        report.duplicated += 1
        for first, again in pairwise(deliveries):
            info = {"message_id": message_id, "payload_id": first.payload_id,
                    "first": asdict(first), "again": asdict(again)}
            crashed = any(first.claim_invoked <= t <= again.time for t in fault_times)
            if (message_id, first.claim_id) in deleted_ok:
                report.redelivered_after_delete += 1
                example("redelivered_after_delete", info)
            elif again.time - first.claim_invoked >= claim_ttl - 1.0:
                report.duplicates_across_expiry += 1
            elif crashed:
                report.duplicates_across_crash += 1
            else:
                report.duplicates_unexplained += 1
                example("duplicates_unexplained", info)

    # FIFO: per consumer, first deliveries only, per producer in ack order.
    first_seen: set[str] = set()
    highest: dict[tuple[str, str], int] = {}
    for delivery in sorted(history.deliveries, key=lambda d: d.time):
        if delivery.message_id in first_seen:
            continue  # a redelivery
        first_seen.add(delivery.message_id)
        if delivery.payload_id not in rank or is_unexpected(delivery.payload_id,
                                                            delivery.message_id):
            continue
        producer, order = rank[delivery.payload_id]
        key = (delivery.consumer, producer)
        if order < highest.get(key, -1):
            report.fifo_violations += 1
            example("fifo_violations", {"consumer": delivery.consumer, "producer": producer,
                                        "payload_id": delivery.payload_id, "rank": order,
                                        "after_rank": highest[key]})
        else:
            highest[key] = order

    report.posts = len(history.posts)
    report.claims = sum(v for k, v in history.statuses.items() if k.startswith("claim "))
    report.deletes = len(history.deletes)
    report.operations = report.posts + report.claims + report.deletes
    report.server_kills = sum(1 for f in history.faults if f.kind == "server-kill")
    report.backend_kills = sum(1 for f in history.faults if f.kind == "backend-kill")
    report.statuses = dict(sorted(history.statuses.items()))
    report.status_500 = sum(v for k, v in history.statuses.items() if k.endswith(" 500"))
    report.examples = dict(examples)
    return report


# --- the workload -----------------------------------------------------------------


QUEUE = "history"
CLAIM_TTL = 60  # Zaqar's minimum
CLAIM_LIMIT = 10


@dataclass
class Nemesis:
    """How to crash things: the server always, the backend when there is one."""

    kill_server: Callable[[], None]
    start_server: Callable[[], None]
    kill_backend: Callable[[], None] | None = None
    start_backend: Callable[[], None] | None = None


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


class Workload:
    """Producers, consumers and a nemesis against one server, for a bounded time."""

    def __init__(self, url: str, nemesis: Nemesis, *, seconds: float, seed: int,
                 producers: int = 2, consumers: int = 2, timeout: float = 5.0,
                 kill_interval: tuple[float, float] = (2.0, 5.0)) -> None:
        self.url = url
        self.nemesis = nemesis
        self.seconds = seconds
        self.seed = seed
        self.producers = producers
        self.consumers = consumers
        self.timeout = timeout
        self.kill_interval = kill_interval
        self.project = f"history-{uuid.uuid4().hex[:10]}"
        self.history = History()
        self.stop = threading.Event()
        self.nemesis_done = threading.Event()
        self.errors: list[str] = []
        self.started = 0.0

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self.timeout, headers={
            "X-Project-ID": self.project, "Client-ID": str(uuid.uuid4())})

    # --- processes ---------------------------------------------------------------

    def _guarded(self, target: Callable[[int], None], number: int) -> None:
        try:
            target(number)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{target.__name__}({number}): {exc!r}")

    def _producer(self, number: int) -> None:
        name = f"p{number}"
        rng = random.Random(f"{self.seed}-{name}")
        history = self.history
        seq = 0
        with self.client() as http:
            for _ in range(1_000_000):  # bounded; the stop event ends it first
                if self.stop.is_set():
                    return
                size = rng.choice((1, 1, 2, 3))
                ids = [f"{name}-{seq + i}" for i in range(size)]
                seq += size
                op = PostOp(process=name, payload_ids=ids, invoked=time.monotonic())
                history.add("posts", op)
                body = {"messages": [{"ttl": 3600, "body": {"pid": pid, "producer": name}}
                                     for pid in ids]}
                try:
                    resp = http.post(f"/v2/queues/{QUEUE}/messages", json=body)
                except httpx.HTTPError as exc:
                    op.completed, op.error = time.monotonic(), _error_name(exc)
                    history.count("post", op.error)
                    time.sleep(0.05)  # the server is down: do not spin
                    continue
                op.completed, op.status = time.monotonic(), resp.status_code
                history.count("post", str(resp.status_code))
                if resp.status_code == 201:
                    op.outcome = "ok"
                    op.message_ids = [href.rsplit("/", 1)[1]
                                      for href in resp.json()["resources"]]
                elif 400 <= resp.status_code < 500:
                    op.outcome = "fail"
                    self.errors.append(f"post {resp.status_code}: {resp.text[:200]}")
                else:
                    time.sleep(0.05)

    def claim_once(self, http: httpx.Client, consumer: str, phase: str) -> int | None:
        """One claim and the delete of what it got: how many messages it
        got, or None when the claim failed."""
        history = self.history
        invoked = time.monotonic()
        try:
            resp = http.post(f"/v2/queues/{QUEUE}/claims", params={"limit": CLAIM_LIMIT},
                             json={"ttl": CLAIM_TTL, "grace": 60})
        except httpx.HTTPError as exc:
            history.count("claim", _error_name(exc))
            return None
        history.count("claim", str(resp.status_code))
        if resp.status_code == 204:
            return 0
        if resp.status_code != 201:
            if 400 <= resp.status_code < 500:
                self.errors.append(f"claim {resp.status_code}: {resp.text[:200]}")
            return None
        now = time.monotonic()
        document = resp.json()
        claim_id = resp.headers["location"].rsplit("/", 1)[1]
        message_ids = []
        for message in document["messages"]:
            body = message.get("body")
            payload_id = body.get("pid") if isinstance(body, dict) else None
            history.add("deliveries", Delivery(consumer, payload_id, message["id"], claim_id,
                                               invoked, now, phase))
            message_ids.append(message["id"])
        if not message_ids:
            return 0
        op = DeleteOp(consumer, message_ids, claim_id, time.monotonic())
        history.add("deletes", op)
        try:
            resp = http.delete(f"/v2/queues/{QUEUE}/messages",
                               params={"ids": ",".join(message_ids), "claim_ids": claim_id})
        except httpx.HTTPError as exc:
            op.completed, op.error = time.monotonic(), _error_name(exc)
            history.count("delete", op.error)
            return len(message_ids)
        op.completed, op.status = time.monotonic(), resp.status_code
        op.ok = resp.status_code == 204
        history.count("delete", str(resp.status_code))
        if 400 <= resp.status_code < 500:
            self.errors.append(f"delete {resp.status_code}: {resp.text[:200]}")
        return len(message_ids)

    def _consumer(self, number: int) -> None:
        name = f"c{number}"
        with self.client() as http:
            for _ in range(1_000_000):
                if self.stop.is_set():
                    return
                got = self.claim_once(http, name, "run")
                if not got:
                    time.sleep(0.05)  # empty queue or server down

    def _nemesis(self) -> None:
        rng = random.Random(f"{self.seed}-nemesis")
        nemesis = self.nemesis
        history = self.history
        deadline = self.started + self.seconds
        backend_crashes = server_crashes = 0
        # A planned moment for the first backend crash, so every run has one;
        # on a slow machine it comes right after the first server crash.
        backend_due = self.started + self.seconds * rng.uniform(0.3, 0.6)

        def enough() -> bool:
            # Every run crashes the server, and the backend when there is one.
            done = server_crashes >= 1 and (nemesis.kill_backend is None or backend_crashes >= 1)
            if done:
                self.nemesis_done.set()
            return done

        for _ in range(10_000):
            pause = rng.uniform(*self.kill_interval)
            late = time.monotonic() + pause >= deadline - 1.0
            if late and enough():
                return
            # Past the planned time, the crashes every run needs come quickly.
            if self.stop.wait(0.2 if late else pause):
                return
            backend = nemesis.kill_backend is not None and (
                (backend_crashes == 0 and (time.monotonic() >= backend_due or server_crashes))
                or (backend_crashes > 0 and rng.random() < 0.25))
            try:
                if backend:
                    backend_crashes += 1
                    also_server = rng.random() < 0.5
                    history.fault("backend-kill")
                    nemesis.kill_backend()  # type: ignore[misc]
                    if also_server:
                        server_crashes += 1
                        history.fault("server-kill")
                        nemesis.kill_server()
                    time.sleep(rng.uniform(0.2, 1.0))  # down for a while
                    nemesis.start_backend()  # type: ignore[misc]
                    history.fault("backend-start")
                    if also_server:
                        nemesis.start_server()
                        history.fault("server-start")
                else:
                    server_crashes += 1
                    history.fault("server-kill")
                    nemesis.kill_server()
                    time.sleep(rng.uniform(0.0, 0.5))
                    nemesis.start_server()
                    history.fault("server-start")
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(f"nemesis: {exc!r}")
                return

    # --- the run -----------------------------------------------------------------

    def run(self) -> History:
        self.started = time.monotonic()
        threads = [threading.Thread(target=self._guarded, args=(self._producer, n), daemon=True)
                   for n in range(self.producers)]
        threads += [threading.Thread(target=self._guarded, args=(self._consumer, n), daemon=True)
                    for n in range(self.consumers)]
        nemesis = threading.Thread(target=self._nemesis, daemon=True)
        for thread in threads:
            thread.start()
        nemesis.start()
        try:
            self.stop.wait(self.seconds)
            # A slow machine may need longer for the crashes every run makes.
            self.nemesis_done.wait(60)
        finally:
            self.stop.set()
            nemesis.join(60)
            for thread in threads:
                thread.join(3 * self.timeout + 5)
        stuck = [t.name for t in [*threads, nemesis] if t.is_alive()]
        if stuck:
            self.errors.append(f"threads still running: {stuck}")
        return self.history

    def finish(self, max_seconds: float = 60.0) -> None:
        """Crash and restart the server one last time, drain the queue with
        claims, and list what stays claimed."""
        history = self.history
        history.fault("server-kill")
        self.nemesis.kill_server()
        self.nemesis.start_server()
        history.fault("server-start")
        deadline = time.monotonic() + max_seconds
        limit = len(history.posts) * 3 + 100  # every message fits in this many claims
        with self.client() as http:
            for _ in range(limit):
                if time.monotonic() > deadline:
                    self.errors.append("drain: out of time")
                    break
                got = self.claim_once(http, "drain", "drain")
                if got == 0:
                    break
                if got is None:
                    time.sleep(0.1)
            self._list_remaining(http, deadline)

    def _list_remaining(self, http: httpx.Client, deadline: float) -> None:
        url: str | None = f"/v2/queues/{QUEUE}/messages"
        params: dict[str, Any] | None = {"echo": "true", "include_claimed": "true", "limit": 20}
        seen: set[str] = set()
        for _ in range(100_000):
            if url is None or time.monotonic() > deadline:
                break
            resp = http.get(url, params=params)
            if resp.status_code != 200:
                self.errors.append(f"list {resp.status_code}: {resp.text[:200]}")
                break
            page = resp.json()
            fresh = [m for m in page["messages"] if m["id"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message["id"])
                body = message.get("body")
                payload_id = body.get("pid") if isinstance(body, dict) else None
                # A claimed message's href names its claim (as in Zaqar).
                self.history.add("remaining", Remaining(payload_id, message["id"],
                                                        "claim_id=" in message["href"]))
            links = [link["href"] for link in page.get("links", []) if link["rel"] == "next"]
            url, params = (links[0] if links else None), None
