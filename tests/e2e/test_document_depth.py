"""Nesting up to ``limits.max_document_depth`` is served everywhere; deeper
is refused at the door.

A body the server accepts must be one it can give back: a body nested close
to the interpreter's recursion limit used to be stored (201) and then fail
every listing of its queue and every webhook delivery with a RecursionError.
Here a property test posts bodies of every depth up to the limit, on every
driver, to a real server with a real webhook receiver, and reads each back
by every path: listing, get by id, claim, webhook, WebSocket. One level more
is refused with a 400 over HTTP and over the WebSocket, and nothing is
written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.test_backends import shared_backend_url
from tests.notify.receiver import Receiver
from tests.support.server import ServerProcess
from tests.ws.util import Socket, ws_url
from tidings.config import Limits

LIMIT = Limits().max_document_depth
QUEUE = "deep"
SERVER_ENV = {
    "TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
    "TIDINGS_NOTIFICATIONS__POLL_INTERVAL": "0.2",
    "TIDINGS_LOG_LEVEL": "warning",
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                    st.text(max_size=8))


@st.composite
def nested(draw: st.DrawFn, depth: st.SearchStrategy[int]) -> Any:
    """A document exactly ``depth`` arrays/objects deep, each level a random
    kind, with scalar siblings beside the deep path."""
    levels = draw(depth)
    document: Any = draw(scalars)
    for _ in range(levels):
        siblings = draw(st.lists(scalars, max_size=2))
        if draw(st.booleans()):
            document = [*siblings, document]
        else:
            document = {**{f"s{i}": s for i, s in enumerate(siblings)}, "deep": document}
    return document


def depth_of(document: Any) -> int:
    if isinstance(document, dict):
        return 1 + max((depth_of(v) for v in document.values()), default=0)
    if isinstance(document, list):
        return 1 + max((depth_of(v) for v in document), default=0)
    return 0


@pytest.fixture(scope="module", params=["sqlite", "redis", "postgres"])
def deep_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ServerProcess]:
    base: Path = tmp_path_factory.mktemp(f"depth-{request.param}")
    storage = (f"sqlite:///{base}/depth.db" if request.param == "sqlite"
               else shared_backend_url(request.param))
    proc = ServerProcess(storage=storage, env=dict(SERVER_ENV), log_path=base / "server.log")
    proc.start()
    yield proc
    proc.stop()
    log = (base / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def session(deep_server: ServerProcess, receiver: Receiver
            ) -> Iterator[tuple[httpx.Client, Socket]]:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": f"depth-{uuid.uuid4().hex[:8]}"}
    with httpx.Client(base_url=deep_server.url, headers=headers, timeout=20) as client:
        created = client.post(f"/v2/queues/{QUEUE}/subscriptions",
                              json={"subscriber": receiver.url, "ttl": 3600})
        assert created.status_code == 201, created.text
        sock = Socket(ws_url(deep_server.url), headers=headers)
        try:
            yield client, sock
        finally:
            sock.close()


@settings(max_examples=4, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(body=[[[0]]])
@given(body=nested(st.integers(1, LIMIT)))
def test_a_body_up_to_the_limit_is_served_by_every_path(
        session: tuple[httpx.Client, Socket], receiver: Receiver, body: Any) -> None:
    client, sock = session
    assert depth_of(body) <= LIMIT
    posted = client.post(f"/v2/queues/{QUEUE}/messages",
                         json={"messages": [{"body": body, "ttl": 300}]})
    assert posted.status_code == 201, posted.text
    message_id = posted.json()["resources"][0].rsplit("/", 1)[1]

    listed = client.get(f"/v2/queues/{QUEUE}/messages", params={"echo": "true", "limit": 20})
    assert listed.status_code == 200, listed.text
    assert body in [m["body"] for m in listed.json()["messages"] if m["id"] == message_id]

    fetched = client.get(f"/v2/queues/{QUEUE}/messages/{message_id}")
    assert fetched.status_code == 200 and fetched.json()["body"] == body

    over_ws = sock.ok("message_get", {"queue_name": QUEUE, "message_id": message_id})
    assert over_ws["messages"]["body"] == body
    listed_ws = sock.ok("message_list", {"queue_name": QUEUE, "echo": True, "limit": 20})
    assert body in [m["body"] for m in listed_ws["messages"] if m["id"] == message_id]

    claimed = client.post(f"/v2/queues/{QUEUE}/claims", json={"ttl": 60, "grace": 60},
                          params={"limit": 20})
    assert claimed.status_code == 201, claimed.text
    mine = [m for m in claimed.json()["messages"] if m["id"] == message_id]
    assert mine and mine[0]["body"] == body
    for m in claimed.json()["messages"]:  # leave the queue empty for the next example
        assert client.delete(m["href"]).status_code == 204

    delivered = _delivery_of(receiver, message_id)
    assert delivered["body"] == body


def _delivery_of(receiver: Receiver, message_id: str) -> dict[str, Any]:
    for count in range(1, 1000):
        got = receiver.wait_for(count, timeout=15)
        for request in got:
            if request.header("X-Tidings-Message-ID") == message_id:
                return request.json
        if len(got) < count:
            break
    raise AssertionError(f"message {message_id} never reached the webhook")


def test_one_level_more_is_refused_over_http_and_websocket(
        session: tuple[httpx.Client, Socket]) -> None:
    client, sock = session
    too_deep: Any = 0
    for _ in range(LIMIT + 1):
        too_deep = [too_deep]
    before = client.get(f"/v2/queues/{QUEUE}/stats").json()["messages"]["total"]
    refused = client.post(f"/v2/queues/{QUEUE}/messages",
                          json={"messages": [{"body": 1}, {"body": too_deep}]})
    assert refused.status_code == 400, refused.text
    assert refused.json()["title"] == "Invalid request body"
    assert "nested too deeply" in refused.json()["description"]
    reply = sock.call("message_post", {"queue_name": QUEUE,
                                       "messages": [{"body": too_deep}]})
    assert reply.status == 400, reply.raw
    metadata = client.put("/v2/queues/deep-meta", json={"a": too_deep})
    assert metadata.status_code == 400, metadata.text
    options = client.post(f"/v2/queues/{QUEUE}/subscriptions",
                          json={"subscriber": "mailto:a@example.org", "ttl": 3600,
                                "options": {"a": too_deep}})
    assert options.status_code == 400, options.text
    assert client.get(f"/v2/queues/{QUEUE}/stats").json()["messages"]["total"] == before
    assert "a" not in client.get("/v2/queues/deep-meta").json()
