"""The essential server-level notification and long-polling behaviours on
Redis and PostgreSQL (test_server.py, test_worker.py and
tests/http/test_long_polling.py run them on SQLite).

Each test drives a real `tidings serve` process on the session's shared
redis-server (persistent; a fresh key prefix) or PostgreSQL server (a fresh
database), with real webhook receivers on 127.0.0.1:

- a post to a queue with a webhook subscription reaches the webhook, with
  its message and delivery ids;
- a receiver that fails twice then succeeds gets the message on the third
  attempt (the subscription's ``_retry_policy``; tiny delays come from the
  server's retry-policy settings, since the API takes whole seconds only);
- a post acknowledged (201) just before a kill -9, while the worker is off,
  is delivered once the server is back with its worker on;
- ``GET .../messages?wait=`` and ``POST .../claims?wait=`` answer shortly
  after another client posts.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.notify.receiver import Receiver
from tests.support import postgres_server, redis_server
from tests.support.server import ServerProcess

BACKENDS = ["redis", "postgres"]
# A long-polling read must answer this soon after the post is acknowledged.
REACTION = 0.3
# Retries 50 ms apart; the subscription's policy sets their number.
QUICK_SETTINGS = {
    "TIDINGS_NOTIFICATIONS__RETRY_POLICY__MINIMUM_DELAY": "0.05",
    "TIDINGS_NOTIFICATIONS__RETRY_POLICY__MAXIMUM_DELAY": "0.05",
}
SERVER_ENV = {
    "TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
    "TIDINGS_NOTIFICATIONS__WEBHOOK_TIMEOUT": "2",
    "TIDINGS_NOTIFICATIONS__POLL_INTERVAL": "0.2",
    "TIDINGS_LOG_LEVEL": "warning",
    **QUICK_SETTINGS,
}


def fresh_storage(backend: str) -> str:
    """A fresh namespace on the session's shared server of that kind."""
    if backend == "redis":
        return f"{redis_server.session_redis().url}?prefix={redis_server.unique_prefix()}"
    pg = postgres_server.shared_server()
    database = f"notify_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    return pg.url(database, max_size=10)


def headers() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": f"nb-{uuid.uuid4().hex[:8]}"}


def subscribe(client: httpx.Client, queue: str, url: str,
              options: dict[str, Any] | None = None) -> str:
    response = client.post(f"/v2/queues/{queue}/subscriptions",
                           json={"subscriber": url, "ttl": 3600, "options": options or {}})
    assert response.status_code == 201, response.text
    return response.json()["subscription_id"]


def post(client: httpx.Client, queue: str, *bodies: Any) -> list[str]:
    response = client.post(f"/v2/queues/{queue}/messages",
                           json={"messages": [{"body": b, "ttl": 600} for b in bodies]})
    assert response.status_code == 201, response.text
    return [href.rsplit("/", 1)[1] for href in response.json()["resources"]]


def log_of(server: ServerProcess) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace") if server.log_path.exists() else ""


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per backend, its delivery worker on."""
    base = tmp_path_factory.mktemp(f"notify-{backend}")
    proc = ServerProcess(storage=fresh_storage(backend), env=dict(SERVER_ENV),
                         log_path=base / "server.log")
    proc.start()
    yield proc
    proc.stop()
    assert "Traceback" not in log_of(proc), log_of(proc)[-4000:]


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=headers(), timeout=10) as c:
        yield c


# --- webhooks ------------------------------------------------------------------------


def test_posts_reach_the_webhook(client: httpx.Client) -> None:
    with Receiver() as receiver:
        subscribe(client, "orders", receiver.url)
        ids = post(client, "orders", {"n": 1}, {"n": 2}, "three")
        got = receiver.wait_for(3)
        time.sleep(0.3)  # nothing more comes: no duplicate
        got = list(receiver.requests)
    assert len(got) == 3, [r.json for r in got]
    assert sorted(r.header("X-Tidings-Message-ID") for r in got) == sorted(ids)
    delivery_ids = {r.header("X-Tidings-Delivery-ID") for r in got}
    assert None not in delivery_ids and len(delivery_ids) == 3
    assert sorted((r.json["body"] for r in got), key=str) == sorted(
        [{"n": 1}, {"n": 2}, "three"], key=str)
    for r in got:
        assert r.json["queue_name"] == "orders"
        assert r.json["Message_Type"] == "Notification"
        assert r.json["ttl"] == 600


def test_a_receiver_failing_twice_gets_the_message_on_the_third_try(
        client: httpx.Client) -> None:
    policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 3,
              "maximum_delay_retries": 0}
    with Receiver(status=lambda n: 500 if n < 2 else 204) as flaky:
        subscribe(client, "flaky", flaky.url, {"_retry_policy": policy})
        [mid] = post(client, "flaky", {"retry": "me"})
        got = flaky.wait_for(3)
        time.sleep(0.3)  # answered 204: no fourth attempt
        got = list(flaky.requests)
    assert len(got) == 3
    assert {r.header("X-Tidings-Message-ID") for r in got} == {mid}
    # The same delivery each time, tried again after the policy's delay.
    assert len({r.header("X-Tidings-Delivery-ID") for r in got}) == 1
    assert all(r.json["body"] == {"retry": "me"} for r in got)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    print(f"\nretry gaps: {[round(g * 1000) for g in gaps]} ms")
    assert all(0.04 <= gap < 2.0 for gap in gaps), gaps


def test_a_post_acknowledged_before_a_crash_is_still_delivered(
        backend: str, tmp_path: Path) -> None:
    # First run: the worker is off, so the notification is only in the
    # outbox when the server dies right after the 201.
    proc = ServerProcess(storage=fresh_storage(backend),
                         env={**SERVER_ENV, "TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER": "false"},
                         log_path=tmp_path / "server.log")
    try:
        proc.start()
        with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                                  timeout=10) as c:
            subscribe(c, "crash", receiver.url)
            [mid] = post(c, "crash", {"survives": True})
            proc.kill()  # SIGKILL: no shutdown hook runs
            assert receiver.requests == []
            proc.env["TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER"] = "true"
            proc.start()
            receiver.wait_for(1, timeout=10)
            time.sleep(0.3)
            got = list(receiver.requests)
    finally:
        proc.stop()
    assert len(got) == 1, [r.json for r in got]
    assert got[0].json["body"] == {"survives": True}
    assert got[0].header("X-Tidings-Message-ID") == mid
    assert got[0].header("X-Tidings-Delivery-ID")


# --- long polling ----------------------------------------------------------------------


def post_later(server: ServerProcess, project: str, queue: str, delay: float
               ) -> tuple[threading.Thread, dict[str, Any]]:
    """Another client posts one message after ``delay`` s; the dict gets
    the monotonic time at which the post was acknowledged."""
    done: dict[str, Any] = {}
    poster = httpx.Client(base_url=server.url, timeout=10,
                          headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": project})
    poster.get(f"/v2/queues/{queue}/messages")  # connected before the wait begins

    def run() -> None:
        try:
            time.sleep(delay)
            resp = poster.post(f"/v2/queues/{queue}/messages",
                               json={"messages": [{"body": "hi"}]})
            done["at"] = time.monotonic()
            done["status"] = resp.status_code
        finally:
            poster.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float, float]:
    start = time.monotonic()
    resp = call()
    return resp, start, time.monotonic()


def test_a_waiting_listing_answers_soon_after_a_post(server: ServerProcess,
                                                     client: httpx.Client) -> None:
    client.get("/v2/queues/lp/messages")  # warm the connection
    thread, done = post_later(server, client.headers["X-Project-ID"], "lp", 0.5)
    resp, start, end = timed(lambda: client.get("/v2/queues/lp/messages",
                                                params={"wait": 5}))
    thread.join(5)
    assert resp.status_code == 200 and done["status"] == 201, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["hi"]
    assert end - start >= 0.45
    reaction = end - done["at"]
    print(f"\nlisting woke {reaction * 1000:.0f} ms after the post's 201")
    assert reaction < REACTION, reaction


def test_a_waiting_claim_answers_soon_after_a_post(server: ServerProcess,
                                                   client: httpx.Client) -> None:
    client.get("/v2/queues/lpc/messages")
    thread, done = post_later(server, client.headers["X-Project-ID"], "lpc", 0.5)
    resp, start, end = timed(lambda: client.post("/v2/queues/lpc/claims", params={"wait": 5},
                                                 json={"ttl": 60, "grace": 60}))
    thread.join(5)
    assert resp.status_code == 201 and done["status"] == 201, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["hi"]
    assert end - start >= 0.45
    reaction = end - done["at"]
    print(f"\nclaim woke {reaction * 1000:.0f} ms after the post's 201")
    assert reaction < REACTION, reaction


def test_a_waiting_claim_with_nothing_posted_is_204_after_the_wait(
        client: httpx.Client) -> None:
    resp, start, end = timed(lambda: client.post("/v2/queues/lpe/claims", params={"wait": 1}))
    assert resp.status_code == 204
    assert 1.0 <= end - start < 1.5
