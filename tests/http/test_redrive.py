"""Dead-letter redrive (docs/redrive.md): messages dead-lettered by
_max_claim_count, moved back through the API and through `tidings redrive`,
then consumed from the target: none lost, none twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import httpx

from tests.http.util import assert_error, list_all, post_messages
from tests.support.server import ServerProcess


def dead_letter(http: httpx.Client, n: int) -> None:
    """Post n messages to q and let _max_claim_count move them all to dlq."""
    http.put("/v2/queues/q", json={"_max_claim_count": 1, "_dead_letter_queue": "dlq"})
    post_messages(http, "q", *({"job": i} for i in range(n)))
    while True:
        resp = http.post("/v2/queues/q/claims", params={"limit": 20}, json={"ttl": 60})
        if resp.status_code == 204:
            break
        assert http.delete(resp.headers["location"]).status_code == 204
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 0
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["total"] == n


def consume_all(http: httpx.Client, queue: str) -> list[int]:
    """Claim and delete everything in the queue; the jobs seen."""
    seen = []
    while True:
        resp = http.post(f"/v2/queues/{queue}/claims", params={"limit": 20}, json={"ttl": 60})
        if resp.status_code == 204:
            return seen
        for message in resp.json()["messages"]:
            seen.append(message["body"]["job"])
            assert http.delete(message["href"]).status_code == 204


def test_redrive_through_the_api(http: httpx.Client, peer: httpx.Client) -> None:
    dead_letter(http, 25)
    resp = http.post("/v2/queues/dlq/redrive", json={"to": "q", "limit": 10})
    assert resp.status_code == 200, resp.text
    first = resp.json()
    assert first["moved"] == 10
    assert len(first["messages"]) == 10
    assert all(href.startswith("/v2/queues/q/messages/") for href in first["messages"])
    listed = list_all(peer, "q")
    assert [f"/v2/queues/q/messages/{m['id']}" for m in listed] == first["messages"]
    assert [m["body"] for m in listed] == [{"job": i} for i in range(10)]
    rest = http.post("/v2/queues/dlq/redrive", json={"to": "q"}).json()
    assert rest["moved"] == 15
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["total"] == 0
    seen = consume_all(http, "q")
    assert Counter(seen) == Counter(range(25))  # none lost, none twice
    # An empty DLQ moves nothing.
    assert http.post("/v2/queues/dlq/redrive", json={"to": "q"}).json() == {
        "moved": 0, "to": "q", "messages": []}


def test_redrive_without_a_target_goes_back_to_the_source(http: httpx.Client) -> None:
    dead_letter(http, 4)  # q names dlq as its dead letter queue
    resp = http.post("/v2/queues/dlq/redrive", json={})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["moved"], resp.json()["to"]) == (4, "q")
    assert Counter(consume_all(http, "q")) == Counter(range(4))
    # Two queues name the same DLQ: which one is ambiguous.
    dead_letter(http, 1)
    http.put("/v2/queues/other", json={"_dead_letter_queue": "dlq"})
    resp = http.post("/v2/queues/dlq/redrive")
    assert_error(resp, 400)
    assert "(other, q)" in resp.json()["description"]
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["total"] == 1


def test_redrive_through_the_cli(http: httpx.Client, server: ServerProcess,
                                 project: str) -> None:
    dead_letter(http, 7)
    out = subprocess.run(
        [sys.executable, "-m", "tidings", "redrive", "dlq", "--to", "q", "--limit", "5",
         "--storage", server.storage, "--project", project],
        capture_output=True, text=True, timeout=60, check=True)
    assert "moved 5 messages from dlq to q" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "tidings", "redrive", "dlq", "--to", "q",
         "--storage", server.storage, "--project", project],
        capture_output=True, text=True, timeout=60, check=True)
    assert "moved 2 messages" in out.stdout
    assert Counter(consume_all(http, "q")) == Counter(range(7))
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["total"] == 0


def test_redrive_leaves_claimed_dead_letters(http: httpx.Client) -> None:
    dead_letter(http, 3)
    held = http.post("/v2/queues/dlq/claims", params={"limit": 1}, json={"ttl": 60})
    assert held.status_code == 201
    moved = http.post("/v2/queues/dlq/redrive", json={"to": "q"}).json()
    assert moved["moved"] == 2
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["claimed"] == 1


def test_redrive_to_another_queue(http: httpx.Client) -> None:
    dead_letter(http, 2)
    assert http.post("/v2/queues/dlq/redrive", json={"to": "retry"}).json()["moved"] == 2
    assert Counter(consume_all(http, "retry")) == Counter(range(2))


def test_redrive_bad_requests(http: httpx.Client) -> None:
    # No queue names dlq as its dead letter queue, so the target must be named.
    assert_error(http.post("/v2/queues/dlq/redrive", json={}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive"), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": ""}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": 7}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": "dlq"}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": "q", "limit": 0}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": "q", "limit": "x"}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": "bad name!"}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json={"to": "q", "extra": 1}), 400)
    assert_error(http.post("/v2/queues/dlq/redrive", json=["q"]), 400)
