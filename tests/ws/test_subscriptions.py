"""Subscriptions over the WebSocket API: a socket subscribes itself (no
subscriber), gets each new message pushed as a frame in the encoding it
subscribed with, and loses its subscriptions when it closes. Also: ``wait``
(long polling) on message_list and claim_create."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.notify_server import NotifyServer
from tests.ws.util import Socket, assert_error, decode, ws_url

Q = {"queue_name": "events"}


def test_socket_subscribes_itself(sock: Socket, http: httpx.Client) -> None:
    created = sock.ok("subscription_create", {**Q, "ttl": 600}, 201)
    sid = created["subscription_id"]
    assert isinstance(sid, str) and sid
    # Again: the same subscriber (this socket) on the same queue.
    assert_error(sock.call("subscription_create", Q), 409, "Resource conflict")
    listed = sock.ok("subscription_list", Q)["subscriptions"]
    assert [s["id"] for s in listed] == [sid]
    assert listed[0]["subscriber"].startswith("websocket:")
    got = sock.ok("subscription_get", {**Q, "subscription_id": sid})
    assert got["id"] == sid and got["ttl"] == 600 and got["confirmed"] is True
    assert got["source"] == "events"
    # The HTTP API sees the same subscription.
    assert http.get(f"/v2/queues/events/subscriptions/{sid}").json()["subscriber"] == (
        listed[0]["subscriber"])
    assert sock.call("subscription_delete", {**Q, "subscription_id": sid}).status == 204
    assert_error(sock.call("subscription_get", {**Q, "subscription_id": sid}), 404)


def test_bad_subscriptions(sock: Socket) -> None:
    assert_error(sock.call("subscription_create", {**Q, "subscriber": "ftp://x/y"}), 400)
    assert_error(sock.call("subscription_create", {**Q, "subscriber": 42}), 400)
    assert_error(sock.call("subscription_create", {**Q, "options": []}), 400)
    assert_error(sock.call("subscription_create", {**Q, "ttl": 1}), 400)
    # The session's server refuses internal webhook targets.
    assert_error(sock.call("subscription_create",
                           {**Q, "subscriber": "http://169.254.169.254/"}), 400)
    for userinfo in ("http://a@example.com/", "http://h\\@example.com/"):
        assert_error(sock.call("subscription_create", {**Q, "subscriber": userinfo}), 400)
    # Keystone trusts need Keystone auth (tests/auth/test_trusts.py).
    assert_error(sock.call("subscription_create",
                           {**Q, "subscriber": "trust+http://example.com/x"}), 400)
    assert sock.call("subscription_create", {}).status == 400  # no queue_name
    assert_error(sock.call("subscription_get", {**Q, "subscription_id": "nope"}), 404)
    assert sock.call("subscription_delete", {**Q, "subscription_id": "nope"}).status == 204


def test_duplicate_subscriber_answers_with_the_same_id(sock: Socket) -> None:
    """As over HTTP (and in Zaqar): a named subscriber subscribed twice gets
    the first subscription's id back, unchanged; a socket subscribing itself
    twice is Zaqar's 409 (test_socket_subscribes_itself)."""
    first = sock.ok("subscription_create", {**Q, "subscriber": "mailto:d@example.com",
                                            "ttl": 600}, 201)
    again = sock.ok("subscription_create", {**Q, "subscriber": "mailto:d@example.com",
                                            "ttl": 900}, 201)
    assert again == first
    got = sock.ok("subscription_get", {**Q, "subscription_id": first["subscription_id"]})
    assert got["ttl"] == 600
    assert len(sock.ok("subscription_list", Q)["subscriptions"]) == 1


def test_host_names_are_accepted_without_resolving_them(sock: Socket) -> None:
    # As in Zaqar: a name is resolved (and checked) at delivery.
    sock.ok("subscription_create", {**Q, "subscriber": "http://fake:8080"}, 201)


def test_other_subscribers_and_update(sock: Socket) -> None:
    sid = sock.ok("subscription_create", {**Q, "subscriber": "mailto:a@example.com"},
                  201)["subscription_id"]
    assert sock.call("subscription_update", {**Q, "subscription_id": sid, "ttl": 900}
                     ).status == 204
    assert sock.ok("subscription_get", {**Q, "subscription_id": sid})["ttl"] == 900
    assert_error(sock.call("subscription_update", {**Q, "subscription_id": sid}), 400)
    assert sock.call("subscription_confirm", {**Q, "subscription_id": sid, "confirmed": False}
                     ).status == 204
    assert sock.ok("subscription_get", {**Q, "subscription_id": sid})["confirmed"] is False


def test_closing_the_socket_deletes_its_subscriptions(
        open_socket: Callable[..., Socket], http: httpx.Client) -> None:
    first = open_socket()
    first.ok("subscription_create", Q, 201)
    mail = first.ok("subscription_create", {**Q, "subscriber": "mailto:k@example.com"},
                    201)["subscription_id"]
    assert len(http.get("/v2/queues/events/subscriptions").json()["subscriptions"]) == 2
    first.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = http.get("/v2/queues/events/subscriptions").json()["subscriptions"]
        if len(left) == 1:
            break
        time.sleep(0.05)
    # Only the socket's own subscription went.
    assert [s["id"] for s in left] == [mail]


def read_notification(sock: Socket, timeout: float = 10) -> dict[str, Any]:
    frame = sock.conn.recv(timeout)
    assert isinstance(frame, str) == (sock.encoding == "json"), type(frame)
    return decode(frame)


def test_new_messages_are_pushed(sock: Socket, http: httpx.Client) -> None:
    sock.ok("subscription_create", Q, 201)
    http.post("/v2/queues/events/messages",
              json={"messages": [{"body": {"n": 1}, "ttl": 120}]})
    frame = read_notification(sock)
    assert frame["Message_Type"] == "Notification"
    assert frame["body"] == {"n": 1} and frame["ttl"] == 120
    assert frame["queue_name"] == "events"
    # Replies still come in order after a push.
    assert sock.call("subscription_list", Q).status == 200


def test_project_with_control_characters(open_socket: Callable[..., Socket]) -> None:
    sock = open_socket(headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p\x1ftopics"})
    assert_error(sock.call("queue_list", {}), 400, "Invalid queue identification")


# --- long polling -----------------------------------------------------------------


def test_message_list_waits_for_a_post(sock: Socket, http: httpx.Client,
                                       server_url: str) -> None:
    done: dict[str, float] = {}

    def later() -> None:
        time.sleep(0.4)
        headers = {"X-Project-ID": http.headers["X-Project-ID"], "Client-ID": str(uuid.uuid4())}
        httpx.post(f"{server_url}/v2/queues/events/messages", headers=headers,
                   json={"messages": [{"body": "late"}]})
        done["at"] = time.monotonic()

    thread = threading.Thread(target=later)
    thread.start()
    start = time.monotonic()
    body = sock.ok("message_list", {**Q, "wait": 5})
    end = time.monotonic()
    thread.join(5)
    assert [m["body"] for m in body["messages"]] == ["late"]
    assert end - start >= 0.35
    assert end - done["at"] < 0.1


def test_claim_create_waits_then_gives_up(sock: Socket) -> None:
    start = time.monotonic()
    reply = sock.call("claim_create", {**Q, "wait": 1})
    assert reply.status == 204
    assert 1.0 <= time.monotonic() - start < 1.5


@pytest.mark.parametrize("wait,status", [(21, 400), (-1, 400), ("5", 400), (True, 400)])
def test_bad_waits(sock: Socket, wait: Any, status: int) -> None:
    assert sock.call("message_list", {**Q, "wait": wait}).status == status
    assert sock.call("claim_create", {**Q, "wait": wait}).status == status


# --- webhooks over the WebSocket API (the notify server allows 127.0.0.1) -----------


def test_webhook_subscription_on_the_notify_server(notify_server: NotifyServer) -> None:
    sock = Socket(ws_url(notify_server.url),
                  headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": uuid.uuid4().hex})
    try:
        reply = sock.call("subscription_create", {**Q, "subscriber": "http://127.0.0.1:9/h"})
        assert reply.status == 201, reply.raw
        assert_error(sock.call("subscription_create",
                               {**Q, "subscriber": "http://10.0.0.1/h"}), 400)
    finally:
        sock.close()
