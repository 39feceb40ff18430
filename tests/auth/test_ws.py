"""The WebSocket API with auth=keystone against a real Keystone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.keystone import ADMIN_PASSWORD, KeystoneServer
from tests.support.server import ServerProcess
from tests.ws.util import Socket, ws_url
from tidings.api.context import Service
from tidings.auth.authenticator import Authenticator
from tidings.config import AuthSettings, KeystoneSettings, Limits, WebSocketSettings
from tidings.storage.registry import driver_from_url
from tidings.transport.ws.endpoint import Endpoint, Session


@pytest.fixture
def open_socket(ks_server: ServerProcess) -> Iterator[Callable[..., Socket]]:
    opened: list[Socket] = []

    def open_(headers: dict[str, str] | None = None, encoding: str = "json") -> Socket:
        sock = Socket(ws_url(ks_server.url), encoding,
                      headers=headers or {"Client-ID": str(uuid.uuid4())})
        opened.append(sock)
        return sock

    yield open_
    for sock in opened:
        sock.close()


def authenticate(sock: Socket, token: str, project: str = "ignored") -> Any:
    return sock.call("authenticate", headers={"X-Auth-Token": token, "X-Project-ID": project})


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_actions_before_authenticating_are_refused(open_socket: Callable[..., Socket],
                                                   tokens: dict, encoding: str) -> None:
    sock = open_socket(encoding=encoding)
    for action in ("queue_list", "ping", "health", "message_post"):
        reply = sock.call(action, {"queue_name": "q"})
        assert (reply.status, reply.body) == (403, {"error": "Not authentified."})
    for bad in ({}, {"X-Auth-Token": "bogus"}, {"X-Auth-Token": ""}):
        reply = sock.call("authenticate", headers=bad)
        assert (reply.status, reply.body) == (401, {"error": "Authentication failed."})
    assert sock.call("queue_list").status == 403
    reply = authenticate(sock, tokens["a-member"])
    assert (reply.status, reply.body) == (200, {"message": "Authentified."})
    assert sock.call("queue_list").status == 200
    # A failed authenticate drops the identity the socket had.
    assert sock.call("authenticate", headers={"X-Auth-Token": "bogus"}).status == 401
    assert sock.call("queue_list").status == 403


def test_health_over_websocket_needs_the_admin_role(open_socket: Callable[..., Socket],
                                                    tokens: dict) -> None:
    member = open_socket()
    authenticate(member, tokens["a-member"])
    reply = member.call("health")
    assert reply.status == 403 and reply.body["error"] == "Forbidden"
    assert member.call("ping").status == 204
    admin = open_socket()
    authenticate(admin, tokens["a-admin"])
    assert admin.call("health").status == 200


# --- tenant isolation -----------------------------------------------------------


@pytest.fixture(scope="module")
def a_queue(ks_server: ServerProcess, tokens: dict) -> Iterator[dict[str, Any]]:
    """Project A's queue: metadata, 3 messages, one claimed."""
    sock = Socket(ws_url(ks_server.url), headers={"Client-ID": str(uuid.uuid4())})
    try:
        assert authenticate(sock, tokens["a-member"]).status == 200
        name = f"ws-private-{uuid.uuid4().hex[:8]}"
        sock.ok("queue_create", {"queue_name": name, "metadata": {"owner": "a"}}, 201)
        ids = sock.post(name, 1, 2, 3, ttl=3600)
        claim = sock.ok("claim_create", {"queue_name": name, "limit": 1, "ttl": 3600}, 201)
        yield {"queue": name, "ids": ids, "claim_id": claim["claim_id"]}
    finally:
        sock.close()


def assert_a_untouched(sock: Socket, a: dict[str, Any]) -> None:
    stats = sock.ok("queue_get_stats", {"queue_name": a["queue"]})["messages"]
    assert (stats["total"], stats["claimed"]) == (3, 1), stats
    assert sock.ok("queue_get", {"queue_name": a["queue"]})["owner"] == "a"
    assert sock.call("claim_get", {"queue_name": a["queue"],
                                   "claim_id": a["claim_id"]}).status == 200


# action, body (formatted with A's queue, ids and claim), status B gets, B's body check
WS_CASES: list[tuple[str, dict, int, Callable[[Any, dict], bool]]] = [
    ("queue_list", {"detailed": True}, 200,
     lambda body, a: a["queue"] not in [q["name"] for q in body["queues"]]),
    # B has no such queue: Zaqar's WebSocket API answers 404 for both.
    ("queue_get", {}, 404, lambda body, a: "owner" not in str(body)),
    ("queue_get_stats", {}, 404, lambda body, a: body["messages"]["total"] == 0),
    ("message_list", {"include_claimed": True, "echo": True}, 200,
     lambda body, a: body["messages"] == []),
    ("message_get", {"message_id": "{id0}"}, 404, lambda body, a: True),
    ("message_get_many", {"message_ids": "{ids}"}, 404, lambda body, a: True),
    ("message_delete", {"message_id": "{id0}"}, 204, lambda body, a: True),
    ("message_delete_many", {"message_ids": "{ids}"}, 204, lambda body, a: True),
    ("message_pop", {"pop": 5}, 200, lambda body, a: body["messages"] == []),
    ("claim_create", {"ttl": 60}, 204, lambda body, a: True),
    ("claim_get", {"claim_id": "{claim_id}"}, 404, lambda body, a: True),
    ("claim_update", {"claim_id": "{claim_id}", "ttl": 120}, 404, lambda body, a: True),
    ("claim_delete", {"claim_id": "{claim_id}"}, 204, lambda body, a: True),
    ("message_post", {"messages": [{"body": "b"}]}, 201, lambda body, a: True),
    ("queue_create", {"metadata": {"owner": "b"}}, 201, lambda body, a: True),
    ("queue_purge", {}, 204, lambda body, a: True),
    ("queue_delete", {}, 204, lambda body, a: True),
]


def _fill(body: dict, a: dict[str, Any]) -> dict:
    values = {"{id0}": a["ids"][0], "{ids}": a["ids"], "{claim_id}": a["claim_id"]}
    return {"queue_name": a["queue"],
            **{k: values.get(v, v) if isinstance(v, str) else v for k, v in body.items()}}


@pytest.mark.parametrize("action, body, status, check", WS_CASES, ids=[c[0] for c in WS_CASES])
def test_project_b_cannot_reach_project_a_over_websocket(
        open_socket: Callable[..., Socket], tokens: dict, projects: dict,
        a_queue: dict[str, Any], action: str, body: dict, status: int,
        check: Callable[[Any, dict], bool]) -> None:
    # B claims A's project in every header; the token's project wins.
    b = open_socket({"Client-ID": str(uuid.uuid4()), "X-Project-ID": projects["a"]})
    assert authenticate(b, tokens["b-member"], projects["a"]).status == 200
    reply = b.call(action, _fill(body, a_queue))
    assert reply.status == status, reply.raw
    assert check(reply.body, a_queue), reply.raw
    # B's writes landed in B's project.
    b_stats = b.call("queue_get_stats", {"queue_name": a_queue["queue"]}).body["messages"]
    assert b_stats["total"] == (1 if action == "message_post" else 0)
    b.call("queue_delete", {"queue_name": a_queue["queue"]})
    a = open_socket()
    authenticate(a, tokens["a-member"])
    assert_a_untouched(a, a_queue)


# --- expiry: in process, with a clock the test moves ------------------------------


async def test_socket_whose_token_expires_must_authenticate_again(
        tmp_path: Path, keystone: KeystoneServer) -> None:
    now = [0.0]
    settings = AuthSettings(strategy="keystone", keystone=KeystoneSettings(
        url=keystone.url, username="admin", password=ADMIN_PASSWORD, project_name="admin"))
    auth = Authenticator(settings, clock=lambda: now[0])
    storage = driver_from_url(f"sqlite:///{tmp_path}/t.db")
    await storage.open()
    try:
        now[0] = time.time()
        endpoint = Endpoint(Service(storage=storage, limits=Limits()), WebSocketSettings(), auth)
        session = Session()
        client = {"Client-ID": str(uuid.uuid4())}

        async def call(action: str, headers: dict = client) -> tuple[int, Any]:
            return await endpoint.dispatch(
                {"action": action, "headers": headers, "body": {}}, session)

        token = keystone.token("a-member")
        assert await call("authenticate", {"X-Auth-Token": token}) == (
            200, {"message": "Authentified."})
        assert (await call("queue_list"))[0] == 200
        assert session.identity is not None and session.identity.expires_at is not None
        now[0] = session.identity.expires_at + 1  # the token's hour has passed
        assert await call("queue_list") == (401, {"error": "Authentication expired."})
        assert await call("queue_list") == (403, {"error": "Not authentified."})
        now[0] = time.time()
        assert (await call("authenticate", {"X-Auth-Token": keystone.token("a-member")}))[0] == 200
        assert (await call("queue_list"))[0] == 200
    finally:
        await auth.close()
        await storage.close()


def test_http_and_websocket_see_the_same_project(open_socket: Callable[..., Socket],
                                                 as_user: Callable[..., httpx.Client],
                                                 tokens: dict) -> None:
    queue = f"both-{uuid.uuid4().hex[:8]}"
    as_user("b-member").post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"body": "from http"}]})
    sock = open_socket()
    authenticate(sock, tokens["b-member"])
    listed = sock.ok("message_list", {"queue_name": queue, "echo": True})
    assert [m["body"] for m in listed["messages"]] == ["from http"]
