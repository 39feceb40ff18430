"""Every action over a real socket, with JSON text frames and with msgpack
binary frames (the ``sock`` fixture runs each test in both encodings)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.ws.util import Socket, assert_error


def test_reply_echoes_the_request(sock: Socket) -> None:
    reply = sock.call("queue_list")
    assert reply.status == 200
    # A missing body is echoed as {}; the api version is added.
    assert reply.request == {"action": "queue_list", "body": {}, "headers": sock.headers,
                             "api": "v2"}
    assert reply.raw["headers"] == {"status": 200}
    reply = sock.call("queue_get", {"queue_name": "q", "extra": [1, {"x": None}]})
    assert reply.request["body"] == {"queue_name": "q", "extra": [1, {"x": None}]}


def test_authenticate_needs_no_headers(sock: Socket) -> None:
    reply = sock.call("authenticate", headers={"X-Auth-Token": "anything"})
    assert reply.status == 200 and reply.body == {"message": "Authentified."}
    assert sock.call("authenticate", headers={}).status == 200


@pytest.mark.parametrize("action", ["ping", "ping_node"])
def test_ping(sock: Socket, action: str) -> None:
    assert sock.call(action).status == 204


@pytest.mark.parametrize("action", ["get_home_doc", "homedoc"])
def test_home_document(sock: Socket, action: str) -> None:
    resources = sock.ok(action)["resources"]
    assert resources["rel/queue"]["href-template"] == "/v2/queues/{queue_name}"


@pytest.mark.parametrize("action", ["check_node_health", "health"])
def test_health(sock: Socket, action: str) -> None:
    health = sock.ok(action)
    assert health["storage_reachable"] is True
    assert health["driver"]


def test_queue_create_get_list_delete(sock: Socket) -> None:
    assert sock.call("queue_create", {"queue_name": "jobs"}).status == 201
    reply = sock.call("queue_create", {"queue_name": "jobs"})
    assert (reply.status, reply.body) == (204, "Queue jobs created.")
    reply = sock.call("queue_create", {"queue_name": "meta", "metadata": {"color": "red"}})
    assert (reply.status, reply.body) == (201, "Queue meta created.")

    # As Zaqar's WebSocket API: the metadata as stored, no reserved defaults
    # (unlike HTTP), and 404 for a queue that does not exist.
    assert sock.ok("queue_get", {"queue_name": "meta"}) == {"color": "red"}
    assert sock.ok("queue_get", {"queue_name": "jobs"}) == {}
    assert_error(sock.call("queue_get", {"queue_name": "never-made"}), 404, "Not found")

    listing = sock.ok("queue_list")
    assert [q["name"] for q in listing["queues"]] == ["jobs", "meta"]
    detailed = sock.ok("queue_list", {"detailed": True, "limit": 1, "with_count": True})
    assert [(q["name"], q["metadata"]) for q in detailed["queues"]] == [("jobs", {})]
    assert detailed["count"] == 2
    after = sock.ok("queue_list", {"marker": "jobs"})
    assert [q["name"] for q in after["queues"]] == ["meta"]

    reply = sock.call("queue_delete", {"queue_name": "jobs"})
    assert (reply.status, reply.body) == (204, "Queue jobs removed.")
    assert [q["name"] for q in sock.ok("queue_list")["queues"]] == ["meta"]


def test_queue_stats_and_purge(sock: Socket) -> None:
    # As Zaqar's WebSocket API (not its HTTP API): a queue that does not
    # exist is a 404 whose body still holds zeros.
    reply = sock.call("queue_get_stats", {"queue_name": "lazy"})
    assert (reply.status, reply.body) == (404, {"messages": {"claimed": 0, "free": 0,
                                                             "total": 0}})
    sock.post("work", "a", "b", "c")
    sock.ok("claim_create", {"queue_name": "work", "limit": 1}, 201)
    stats = sock.ok("queue_get_stats", {"queue_name": "work"})["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (3, 1, 2)
    assert stats["oldest"]["body"] == "a" and stats["newest"]["body"] == "c"

    assert sock.call("queue_purge", {"queue_name": "work",
                                     "resource_types": ["messages"]}).status == 204
    assert sock.ok("queue_get_stats", {"queue_name": "work"})["messages"]["total"] == 0
    sock.call("queue_delete", {"queue_name": "work"})
    assert sock.call("queue_get_stats", {"queue_name": "work"}).status == 404
    assert sock.call("queue_purge", {"queue_name": "never-made"}).status == 204
    assert_error(sock.call("queue_purge", {"queue_name": "work", "resource_types": ["x"]}),
                 400, "Invalid API request")


def test_message_post_list_get(sock: Socket, open_socket: Callable[..., Socket],
                               project: str) -> None:
    bodies = ["text", {"nested": [1, 2.5, None, True]}, "ünïcødé ✓"]
    ids = sock.post("inbox", *bodies)
    assert len(ids) == 3 and len(set(ids)) == 3

    # echo: a client does not see its own messages unless it asks.
    # Zaqar's WebSocket listing has no links, even when it is empty.
    assert sock.ok("message_list", {"queue_name": "inbox"}) == {"messages": []}
    page = sock.ok("message_list", {"queue_name": "inbox", "echo": True})
    assert list(page) == ["messages"]
    listed = page["messages"]
    assert [m["body"] for m in listed] == bodies
    assert [m["id"] for m in listed] == ids
    # Its messages carry claim_id (null when free) and no claim_count.
    assert all(m["claim_id"] is None and "claim_count" not in m for m in listed)
    # Another client of the project sees them without echo, whatever its encoding.
    for encoding in ("json", "msgpack"):
        peer = open_socket(encoding, headers={"Client-ID": str(uuid.uuid4()),
                                              "X-Project-ID": project})
        page = peer.ok("message_list", {"queue_name": "inbox", "limit": 2})["messages"]
        assert [m["body"] for m in page] == bodies[:2]
        rest = peer.ok("message_list", {"queue_name": "inbox", "marker": ids[1]})["messages"]
        assert [m["body"] for m in rest] == bodies[2:]

    one = sock.ok("message_get", {"queue_name": "inbox", "message_id": ids[1]})["messages"]
    assert (one["id"], one["body"], one["ttl"]) == (ids[1], bodies[1], 300)
    many = sock.ok("message_get_many", {"queue_name": "inbox",
                                        "message_ids": [ids[0], ids[2], "0000000fffffffff"]})
    assert sorted(m["id"] for m in many["messages"]) == sorted([ids[0], ids[2]])
    assert_error(sock.call("message_get", {"queue_name": "inbox",
                                           "message_id": "0000000fffffffff"}), 404, "Not found")
    # A message belongs to its queue.
    assert_error(sock.call("message_get", {"queue_name": "other", "message_id": ids[0]}),
                 404, "Not found")


def test_message_delete_and_pop(sock: Socket) -> None:
    ids = sock.post("q", *range(8))
    assert sock.call("message_delete", {"queue_name": "q", "message_id": ids[0]}).status == 204
    # Idempotent.
    assert sock.call("message_delete", {"queue_name": "q", "message_id": ids[0]}).status == 204
    reply = sock.call("message_delete_many", {"queue_name": "q", "message_ids": ids[1:3]})
    assert reply.status == 204
    popped = sock.ok("message_delete_many", {"queue_name": "q", "pop": 2})["messages"]
    assert [m["body"] for m in popped] == [3, 4]
    popped = sock.ok("message_pop", {"queue_name": "q", "pop": 2})["messages"]
    assert [m["body"] for m in popped] == [5, 6]
    left = sock.ok("message_list", {"queue_name": "q", "echo": True})["messages"]
    assert [m["body"] for m in left] == [7]
    assert_error(sock.call("message_delete_many", {"queue_name": "q", "pop": 21}),
                 400, "Invalid API request")
    assert_error(sock.call("message_delete_many", {"queue_name": "q"}), 400,
                 "Invalid API request")


def test_claims(sock: Socket) -> None:
    ids = sock.post("tasks", "a", "b", "c")
    claim = sock.ok("claim_create", {"queue_name": "tasks", "limit": 2, "ttl": 120,
                                     "grace": 60}, 201)
    claim_id = claim["claim_id"]
    assert [m["body"] for m in claim["messages"]] == ["a", "b"]
    assert all(m["claim_id"] == claim_id for m in claim["messages"])

    got = sock.ok("claim_get", {"queue_name": "tasks", "claim_id": claim_id})
    assert got["ttl"] == 120 and [m["id"] for m in got["messages"]] == ids[:2]
    reply = sock.call("claim_update", {"queue_name": "tasks", "claim_id": claim_id,
                                       "ttl": 300})
    assert (reply.status, reply.body) == (204, f"Claim {claim_id} updated.")
    assert sock.ok("claim_get", {"queue_name": "tasks", "claim_id": claim_id})["ttl"] == 300

    # A claimed message needs its claim id to be deleted.
    assert_error(sock.call("message_delete", {"queue_name": "tasks", "message_id": ids[0]}),
                 403, "Unable to delete")
    assert sock.call("message_delete", {"queue_name": "tasks", "message_id": ids[0],
                                        "claim_id": claim_id}).status == 204

    reply = sock.call("claim_delete", {"queue_name": "tasks", "claim_id": claim_id})
    assert (reply.status, reply.body) == (204, f"Claim {claim_id} deleted.")
    assert_error(sock.call("claim_get", {"queue_name": "tasks", "claim_id": claim_id}),
                 404, "Not found")
    assert_error(sock.call("claim_update", {"queue_name": "tasks", "claim_id": claim_id,
                                            "ttl": 100}), 404, "Not found")
    assert sock.call("claim_delete", {"queue_name": "tasks", "claim_id": claim_id}).status == 204

    # The released message and the unclaimed one can be claimed again; then nothing.
    again = sock.ok("claim_create", {"queue_name": "tasks"}, 201)
    assert [m["body"] for m in again["messages"]] == ["b", "c"]
    reply = sock.call("claim_create", {"queue_name": "tasks"})
    assert reply.status == 204


def test_a_bad_post_creates_nothing(sock: Socket) -> None:
    reply = sock.call("message_post", {"queue_name": "fresh",
                                       "messages": [{"body": 1}, {"body": 2, "ttl": 5}]})
    assert_error(reply, 400, "Invalid API request")
    assert sock.ok("queue_list")["queues"] == []


# Each case: a WebSocket request and the HTTP request for the same operation;
# both must fail with the same status and title.
SAME_ERRORS = [
    (("queue_create", {"queue_name": "bad name!"}),
     ("PUT", "/v2/queues/bad%20name!", None)),
    (("queue_list", {"limit": 21}), ("GET", "/v2/queues?limit=21", None)),
    (("message_post", {"queue_name": "q", "messages": [{"body": 1, "ttl": 59}]}),
     ("POST", "/v2/queues/q/messages", {"messages": [{"body": 1, "ttl": 59}]})),
    (("message_post", {"queue_name": "q", "messages": [{"body": 1, "ttl": "60"}]}),
     ("POST", "/v2/queues/q/messages", {"messages": [{"body": 1, "ttl": "60"}]})),
    (("message_post", {"queue_name": "q", "messages": ["hello"]}),
     ("POST", "/v2/queues/q/messages", {"messages": ["hello"]})),
    (("message_post", {"queue_name": "q", "messages": [{"body": 1, "delay": 901}]}),
     ("POST", "/v2/queues/q/messages", {"messages": [{"body": 1, "delay": 901}]})),
    (("message_list", {"queue_name": "q", "limit": 0}),
     ("GET", "/v2/queues/q/messages?limit=0", None)),
    (("message_get_many", {"queue_name": "q", "message_ids": ["0000000fffffffff"]}),
     ("GET", "/v2/queues/q/messages?ids=0000000fffffffff", None)),
    (("message_get_many", {"queue_name": "q", "message_ids": [f"{i:016x}" for i in range(21)]}),
     ("GET", "/v2/queues/q/messages?ids=" + ",".join(f"{i:016x}" for i in range(21)), None)),
    (("claim_create", {"queue_name": "q", "ttl": 43201}),
     ("POST", "/v2/queues/q/claims", {"ttl": 43201})),
    (("claim_create", {"queue_name": "q", "grace": "60"}),
     ("POST", "/v2/queues/q/claims", {"grace": "60"})),
    (("claim_get", {"queue_name": "q", "claim_id": "nope"}),
     ("GET", "/v2/queues/q/claims/nope", None)),
]


@pytest.mark.parametrize("ws_request,http_request", SAME_ERRORS,
                         ids=[f"{w[0]}-{i}" for i, (w, _) in enumerate(SAME_ERRORS)])
def test_errors_match_http(sock: Socket, http: httpx.Client, ws_request, http_request) -> None:
    method, path, document = http_request
    resp = http.request(method, path, json=document)
    assert resp.status_code >= 400, resp.text
    reply = sock.call(*ws_request)
    assert_error(reply, resp.status_code, resp.json()["title"])


def test_claim_errors_match_http(sock: Socket, http: httpx.Client) -> None:
    ids = sock.post("q", "x")
    claim_id = sock.ok("claim_create", {"queue_name": "q"}, 201)["claim_id"]
    # A claim id on an unclaimed message, an unknown claim id: 400 both ways.
    other = sock.post("q", "y")[0]
    resp = http.delete(f"/v2/queues/q/messages/{other}", params={"claim_id": claim_id})
    reply = sock.call("message_delete", {"queue_name": "q", "message_id": other,
                                         "claim_id": claim_id})
    assert_error(reply, resp.status_code, resp.json()["title"])
    reply = sock.call("message_delete", {"queue_name": "q", "message_id": ids[0],
                                         "claim_id": "ffffffffffffffffffffffff"})
    assert_error(reply, 400, "Unable to delete")


def test_encodings_see_the_same_data(open_socket: Callable[..., Socket]) -> None:
    as_json, as_msgpack = open_socket("json"), open_socket("msgpack")
    body = {"k": ["v", 1, 2.5, None, False], "ü": {"deep": {"er": "✓"}}}
    as_msgpack.post("mixed", body)
    as_json.post("mixed", body)
    for sock in (as_json, as_msgpack):
        listed = sock.ok("message_list", {"queue_name": "mixed", "echo": True})["messages"]
        assert [m["body"] for m in listed] == [body, body]
