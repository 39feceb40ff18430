"""Long polling: ``wait`` on message listing and claim creation.

An empty read waits on the queue's watch (woken by the post itself, never
by polling): it must answer within 100 ms of a post, and after ``wait``
seconds when nothing comes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.http.util import assert_error, other_client

Q = "/v2/queues/lp"
REACTION = 0.1


def post_later(client: httpx.Client, delay: float, queue: str = Q, body: Any = "hi"
               ) -> tuple[threading.Thread, dict[str, float]]:
    """Post one message after ``delay`` s from another thread; the dict gets
    the monotonic time at which the post was acknowledged."""
    done: dict[str, float] = {}

    def run() -> None:
        time.sleep(delay)
        resp = client.post(f"{queue}/messages", json={"messages": [{"body": body}]})
        done["at"] = time.monotonic()
        done["status"] = resp.status_code

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float, float]:
    start = time.monotonic()
    resp = call()
    return resp, start, time.monotonic()


def test_listing_answers_within_100ms_of_a_post(http: httpx.Client, peer: httpx.Client
                                                ) -> None:
    http.get(f"{Q}/messages")  # warm the connection
    with other_client(http) as poster:
        poster.get(f"{Q}/messages")
        thread, done = post_later(poster, 0.5)
        resp, start, end = timed(lambda: http.get(f"{Q}/messages", params={"wait": 5}))
        thread.join(5)
    assert resp.status_code == 200 and done["status"] == 201
    assert [m["body"] for m in resp.json()["messages"]] == ["hi"]
    assert end - start >= 0.45
    assert end - done["at"] < REACTION, end - done["at"]


def test_listing_returns_after_wait_when_nothing_comes(http: httpx.Client) -> None:
    resp, start, end = timed(lambda: http.get(f"{Q}/messages", params={"wait": 1}))
    assert resp.status_code == 200
    assert resp.json() == {"messages": [], "links": []}
    assert 1.0 <= end - start < 1.5


def test_a_full_page_answers_at_once(http: httpx.Client, peer: httpx.Client) -> None:
    peer.post(f"{Q}/messages", json={"messages": [{"body": 1}]})
    resp, start, end = timed(lambda: http.get(f"{Q}/messages", params={"wait": 10}))
    assert len(resp.json()["messages"]) == 1
    assert end - start < 0.5


def test_own_messages_do_not_end_the_wait(http: httpx.Client) -> None:
    """Without echo a client's own post is invisible to it: the wait goes on
    until another client posts."""
    with other_client(http) as other:
        own_thread, _ = post_later(http, 0.3, body="mine")
        their_thread, done = post_later(other, 0.9, body="theirs")
        resp, _start, end = timed(lambda: other_list(http, wait=5))
        own_thread.join(5)
        their_thread.join(5)
    assert [m["body"] for m in resp.json()["messages"]] == ["theirs"]
    assert end - done["at"] < REACTION


def other_list(http: httpx.Client, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=http.base_url, headers=dict(http.headers), timeout=30) as c:
        return c.get(f"{Q}/messages", params=params)


def test_claim_answers_within_100ms_of_a_post(http: httpx.Client, peer: httpx.Client) -> None:
    http.get(f"{Q}/messages")
    thread, done = post_later(peer, 0.5)
    resp, _start, end = timed(lambda: http.post(f"{Q}/claims", params={"wait": 5},
                                               json={"ttl": 60, "grace": 60}))
    thread.join(5)
    assert resp.status_code == 201, resp.text
    assert [m["body"] for m in resp.json()["messages"]] == ["hi"]
    assert end - done["at"] < REACTION, end - done["at"]


def test_claim_after_wait_is_204(http: httpx.Client) -> None:
    resp, start, end = timed(lambda: http.post(f"{Q}/claims", params={"wait": 1}))
    assert resp.status_code == 204
    assert 1.0 <= end - start < 1.5


def test_waits_on_its_own_queue_only(http: httpx.Client, peer: httpx.Client) -> None:
    thread, _ = post_later(peer, 0.2, queue="/v2/queues/elsewhere")
    resp, start, end = timed(lambda: http.get(f"{Q}/messages", params={"wait": 1}))
    thread.join(5)
    assert resp.json()["messages"] == []
    assert end - start >= 1.0


@pytest.mark.parametrize("wait,title", [
    ("-1", "Invalid API request"),
    ("21", "Invalid API request"),
    ("abc", "Invalid parameter"),
    ("1.5", "Invalid parameter"),
])
def test_bad_waits(http: httpx.Client, wait: str, title: str) -> None:
    assert_error(http.get(f"{Q}/messages", params={"wait": wait}), 400, title)
    assert_error(http.post(f"{Q}/claims", params={"wait": wait}), 400, title)


def test_wait_zero_is_no_wait(http: httpx.Client) -> None:
    resp, start, end = timed(lambda: http.get(f"{Q}/messages", params={"wait": 0}))
    assert resp.status_code == 200 and end - start < 0.5


def test_many_waiters_are_all_woken(http: httpx.Client, peer: httpx.Client) -> None:
    results: list[tuple[int, float]] = []
    clients = [httpx.Client(base_url=http.base_url, headers=dict(http.headers), timeout=30)
               for _ in range(10)]
    for client in clients:
        client.get(f"{Q}/messages")  # connected before the test begins

    def wait(client: httpx.Client) -> None:
        resp = client.get(f"{Q}/messages", params={"wait": 5})
        results.append((len(resp.json()["messages"]), time.monotonic()))

    waiters = [threading.Thread(target=wait, args=(c,)) for c in clients]
    for thread in waiters:
        thread.start()
    time.sleep(0.5)
    peer.post(f"{Q}/messages", json={"messages": [{"body": 1}]})
    posted = time.monotonic()
    for thread in waiters:
        thread.join(10)
    for client in clients:
        client.close()
    assert len(results) == 10
    assert all(count == 1 for count, _ in results)
    assert max(at for _, at in results) - posted < 0.5
