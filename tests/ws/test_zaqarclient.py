"""python-zaqarclient's websocket transport (with websocket-client) against
the real server.

How the client is set up for a WebSocket and noauth: the transport is
picked by the URL scheme (``ws://``); it reads the project from
``auth_opts.options.os_project_id`` and requires ``os_auth_token`` (any
value under noauth); it opens the socket and sends ``authenticate`` first.

The transport sends a request's ``content`` as the body and drops its
``params`` (python-zaqarclient 4.7: "Websocket transport does not yet
support params"), so the high-level ``Client`` calls that name a queue
(which travel as params) cannot work over it; ``ping``, ``health`` and
``homedoc`` do. Queue, message and claim operations go through the
transport itself, as its documentation shows: ``Request(endpoint, action,
content=json.dumps(body))``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from zaqarclient.queues.v2.client import Client
from zaqarclient.transport import errors as zerrors
from zaqarclient.transport import get_transport_for
from zaqarclient.transport.request import Request
from zaqarclient.transport.ws import WebsocketTransport

from tests.ws.util import Socket


def conf(project: str) -> dict[str, Any]:
    return {"auth_opts": {"backend": "noauth",
                          "options": {"os_project_id": project, "os_auth_token": "noauth"}}}


@pytest.fixture
def transport(url: str, project: str) -> Iterator[WebsocketTransport]:
    trans = get_transport_for(url, version=2, options=conf(project))
    assert isinstance(trans, WebsocketTransport)
    with trans:
        yield trans


@pytest.fixture
def call(transport: WebsocketTransport, url: str):
    def call_(action: str, **body: Any) -> Any:
        resp = transport.send(Request(url, action, content=json.dumps(body) if body else None))
        return resp.status_code, json.loads(resp.content)
    return call_


def test_high_level_client_ping_health_homedoc(url: str, project: str) -> None:
    client = Client(url, version=2, conf=conf(project))
    assert client.ping() is True
    assert client.health()["storage_reachable"] is True
    assert "rel/queues" in client.homedoc()["resources"]


def test_queues(call) -> None:
    assert call("queue_create", queue_name="jobs", metadata={"owner": "me"}) == \
        (201, "Queue jobs created.")
    assert call("queue_create", queue_name="jobs")[0] == 204
    status, meta = call("queue_get", queue_name="jobs")
    assert status == 200 and meta["owner"] == "me"
    status, listing = call("queue_list", detailed=True)
    assert [(q["name"], q["metadata"]) for q in listing["queues"]] == [("jobs", {"owner": "me"})]
    assert call("queue_get_stats", queue_name="jobs")[1]["messages"]["total"] == 0
    assert call("queue_purge", queue_name="jobs")[0] == 204
    assert call("queue_delete", queue_name="jobs")[0] == 204
    assert call("queue_list")[1]["queues"] == []


def test_messages_and_claims(call) -> None:
    status, posted = call("message_post", queue_name="work",
                          messages=[{"body": {"n": n}, "ttl": 300} for n in range(4)])
    assert status == 201 and len(posted["message_ids"]) == 4
    ids = posted["message_ids"]
    listed = call("message_list", queue_name="work", echo=True)[1]["messages"]
    assert [m["body"]["n"] for m in listed] == [0, 1, 2, 3]
    assert call("message_get", queue_name="work", message_id=ids[0])[1]["messages"]["id"] == ids[0]
    assert len(call("message_get_many", queue_name="work", message_ids=ids[:2])[1]["messages"]) == 2

    status, claim = call("claim_create", queue_name="work", limit=2, ttl=60, grace=60)
    assert status == 201 and [m["id"] for m in claim["messages"]] == ids[:2]
    claim_id = claim["claim_id"]
    assert call("claim_get", queue_name="work", claim_id=claim_id)[1]["ttl"] == 60
    assert call("claim_update", queue_name="work", claim_id=claim_id, ttl=120)[0] == 204
    for message in claim["messages"]:
        assert call("message_delete", queue_name="work", message_id=message["id"],
                    claim_id=claim_id)[0] == 204
    assert call("claim_delete", queue_name="work", claim_id=claim_id)[0] == 204

    assert call("message_delete_many", queue_name="work", message_ids=[ids[2]])[0] == 204
    status, popped = call("message_delete_many", queue_name="work", pop=5)
    assert status == 200 and [m["id"] for m in popped["messages"]] == [ids[3]]
    assert call("claim_create", queue_name="work")[0] == 204


def test_errors_raise_the_clients_exceptions(call) -> None:
    with pytest.raises(zerrors.ResourceNotFound):
        call("claim_get", queue_name="work", claim_id="nope")
    with pytest.raises(zerrors.MalformedRequest) as bad:
        call("queue_create", queue_name="bad name")
    assert "Invalid queue identification" in str(bad.value)
    call("message_post", queue_name="work", messages=[{"body": 1}])
    claim = call("claim_create", queue_name="work")[1]
    with pytest.raises(zerrors.ForbiddenError):
        call("message_delete", queue_name="work", message_id=claim["messages"][0]["id"])
    with pytest.raises(zerrors.MalformedRequest):
        call("no_such_action")


def test_the_client_sees_what_other_sockets_wrote(call, url: str, project: str,
                                                 headers: dict[str, str]) -> None:
    sock = Socket(url, "msgpack", headers=headers)
    try:
        sock.post("shared", "from msgpack")
    finally:
        sock.close()
    listed = call("message_list", queue_name="shared")[1]["messages"]
    assert [m["body"] for m in listed] == ["from msgpack"]
