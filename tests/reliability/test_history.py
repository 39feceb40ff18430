"""Crash testing with a history checker (see history.py).

The checker first, on small synthetic histories; then the real thing on
each driver: a real `tidings serve` process killed with SIGKILL at random
moments (and, for Redis and PostgreSQL, the backend killed and restarted
too), producers and consumers recording everything, the queue drained at
the end, and the history checked: nothing acknowledged is lost, nothing
unexpected shows up.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.reliability.history import (
    CLAIM_TTL,
    DeleteOp,
    Delivery,
    Fault,
    History,
    Nemesis,
    PostOp,
    Remaining,
    Workload,
    check,
)
from tests.support import postgres_server, redis_server
from tests.support.server import ServerProcess

# --- the checker on synthetic histories ---------------------------------------------


def post(process: str, ids: list[str], at: float, outcome: str = "ok") -> PostOp:
    return PostOp(process, ids, invoked=at, completed=at + 0.01, outcome=outcome,
                  message_ids=[f"m-{i}" for i in ids] if outcome == "ok" else [])


def deliver(consumer: str, pid: str, at: float, claim: str = "c1",
            message_id: str | None = None) -> Delivery:
    return Delivery(consumer, pid, message_id or f"m-{pid}", claim, claim_invoked=at - 0.01,
                    time=at)


def test_a_clean_history_checks_clean() -> None:
    h = History(posts=[post("p0", ["a", "b"], 1), post("p0", ["c"], 2)],
                deliveries=[deliver("c0", "a", 3), deliver("c0", "b", 3), deliver("c1", "c", 4)])
    h.deletes = [DeleteOp("c0", ["m-a", "m-b"], "c1", 3.1, 3.2, ok=True)]
    report = check(h, claim_ttl=60)
    assert report.ok()
    assert (report.acknowledged, report.delivered, report.lost, report.unexpected,
            report.duplicated, report.fifo_violations) == (3, 3, 0, 0, 0, 0)


def test_lost_counts_acknowledged_messages_neither_delivered_nor_remaining() -> None:
    h = History(posts=[post("p0", ["a"], 1), post("p0", ["b"], 2), post("p0", ["c"], 3),
                       post("p0", ["d"], 4, outcome="info")],
                deliveries=[deliver("c0", "a", 5)],
                remaining=[Remaining("b", "m-b", claimed=True)])
    report = check(h, claim_ttl=60)
    # c was acknowledged and is nowhere; d was never acknowledged: not lost.
    assert report.lost == 1 and report.examples["lost"][0]["payload_id"] == "c"
    assert report.still_in_queue == 1 and report.unknown == 1
    assert not report.ok()


def test_unexpected_counts_messages_never_attempted_or_with_another_id() -> None:
    h = History(posts=[post("p0", ["a"], 1), post("p0", ["b"], 2, outcome="info")],
                deliveries=[deliver("c0", "a", 3, message_id="m-other"),  # acked as m-a
                            deliver("c0", "b", 3),  # unknown outcome, stored: fine
                            deliver("c0", "zz", 4)],  # never attempted
                remaining=[Remaining(None, "m-foreign", claimed=False)])
    report = check(h, claim_ttl=60)
    assert report.unexpected == 3
    assert report.lost == 1  # m-a itself never showed up


def test_duplicates_are_classified() -> None:
    h = History(posts=[post("p0", [x], i) for i, x in enumerate("abcd")])
    h.deliveries = [
        deliver("c0", "a", 10, claim="k1"), deliver("c1", "a", 11, claim="k2"),  # no reason
        deliver("c0", "b", 10, claim="k1"), deliver("c1", "b", 75, claim="k3"),  # expiry
        deliver("c0", "c", 20, claim="k4"), deliver("c1", "c", 22, claim="k5"),  # a crash
        deliver("c0", "d", 30, claim="k6"), deliver("c1", "d", 90, claim="k7"),  # deleted!
    ]
    h.faults = [Fault("server-kill", 21)]
    h.deletes = [DeleteOp("c0", ["m-d"], "k6", 30.1, 30.2, ok=True),
                 DeleteOp("c0", ["m-c"], "k4", 20.1, 20.2, ok=False)]
    report = check(h, claim_ttl=60)
    assert report.duplicated == 4
    assert (report.duplicates_unexplained, report.duplicates_across_expiry,
            report.duplicates_across_crash, report.redelivered_after_delete) == (1, 1, 1, 1)
    assert not report.ok()


def test_fifo_violations_per_consumer_and_producer_skip_redeliveries() -> None:
    h = History(posts=[post("p0", ["a", "b"], 1), post("p0", ["c"], 2), post("p1", ["x"], 1.5)])
    h.deliveries = [
        deliver("c0", "b", 3), deliver("c0", "a", 3.1),  # b before a: a violation
        deliver("c1", "x", 3.2), deliver("c1", "c", 3.3),  # other producers do not count
        deliver("c1", "a", 70),  # a redelivery: skipped
    ]
    report = check(h, claim_ttl=60)
    assert report.fifo_violations == 1
    assert report.examples["fifo_violations"][0]["payload_id"] == "a"


# --- the real thing --------------------------------------------------------------

DRIVERS = ["sqlite", "redis", "postgres"]


@contextmanager
def backend_for(driver: str, tmp_path: Path) -> Iterator[tuple[str, Nemesis | None]]:
    """The storage URL and the backend's kill/start, for a nemesis."""
    if driver == "sqlite":
        yield f"sqlite:///{tmp_path}/history.db", None
    elif driver == "redis":
        # appendfsync always: a SIGKILL loses nothing Redis acknowledged.
        redis = redis_server.RedisServer(extra=("--appendfsync", "always")).start()

        def kill_redis() -> None:
            assert redis.process is not None
            redis.process.kill()
            redis.process.wait(10)

        try:
            yield (f"{redis.url}?prefix=h:&socket_timeout=2&socket_connect_timeout=1",
                   Nemesis(lambda: None, lambda: None, kill_redis, redis.start))
        finally:
            redis.cleanup()
    else:
        pg = postgres_server.new_server()
        try:
            yield (pg.url("postgres", connect_timeout=2, command_timeout=5, max_size=10),
                   Nemesis(lambda: None, lambda: None, lambda: pg.stop("immediate"), pg.start))
        finally:
            pg.destroy()


RESTART_SECONDS = 120.0


@pytest.mark.parametrize("driver", DRIVERS)
def test_crash_history(driver: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                       history_seconds: float, history_seed: int) -> None:
    seed = history_seed ^ zlib.crc32(driver.encode())
    with backend_for(driver, tmp_path) as (storage, backend):
        server = ServerProcess(storage=storage, log_path=tmp_path / "server.log").start()
        try:
            # A restart waits up to RESTART_SECONDS: on a loaded machine a
            # start took over the usual 20 s, which ended a soak's crashes.
            nemesis = Nemesis(kill_server=server.kill,
                              start_server=lambda: server.start(timeout=RESTART_SECONDS))
            if backend is not None:
                nemesis.kill_backend, nemesis.start_backend = (backend.kill_backend,
                                                               backend.start_backend)
            workload = Workload(server.url, nemesis, seconds=history_seconds, seed=seed)
            history = workload.run()
            workload.finish()
        finally:
            server.stop()
    report = check(history, claim_ttl=CLAIM_TTL, driver=driver)
    report.seconds, report.seed = history_seconds, seed
    log = (tmp_path / "server.log").read_text(errors="replace")
    out_dir = tmp_path_factory.getbasetemp() / "reliability"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"history-{driver}.json"
    out.write_text(report.to_json())
    print(f"\n{report.summary()}\n  statuses {report.statuses}\n  written to {out}")

    assert not workload.errors, workload.errors[:10]
    assert report.lost == 0, report.examples.get("lost")
    assert report.unexpected == 0, report.examples.get("unexpected")
    assert report.redelivered_after_delete == 0, report.examples.get("redelivered_after_delete")
    assert report.duplicates_unexplained == 0, report.examples.get("duplicates_unexplained")
    assert report.status_500 == 0, report.statuses
    assert "unexpected error" not in log, log[-3000:]
    # The run did what it claims: crashes, and real traffic around them.
    assert report.server_kills >= 2
    if backend is not None:
        assert report.backend_kills >= 1
    assert report.acknowledged >= 50 and report.delivered >= 50, report.summary()
