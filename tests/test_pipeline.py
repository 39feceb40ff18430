"""The pipeline: stages around operations, configured by name; and the
worked example, examples/json_schema_stage.py, on a real server."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Callable

import httpx
import pytest

from tests.support.notify_server import NotifyServer
from tidings import errors
from tidings.api import messages, queues
from tidings.api.context import Context, Service
from tidings.api.pipeline import Notifier, Pipeline, load_stage, names
from tidings.config import Limits, Settings
from tidings.storage.common.outbox import POST_WROTE_DELIVERIES

CALLS: list[tuple[str, Any]] = []


class Recorder:
    """A stage that records what it sees."""

    async def before_post(self, ctx: Context, queue: str, document: Any, **_: Any) -> None:
        CALLS.append(("before_post", queue))
        if document == {"reject": True}:
            raise errors.ValidationFailed("rejected by the stage")

    async def after_post(self, ctx: Context, result: Any, queue: str, **_: Any) -> None:
        CALLS.append(("after_post", result))


class NoArgs:
    async def before_create(self, ctx: Context, **arguments: Any) -> None:
        CALLS.append(("before_create", arguments))


class FakeStorage:
    """Just enough storage for messages.post and queues.create."""

    def __init__(self) -> None:
        self.posted: list[Any] = []
        self.queues = self
        self.messages = self

    async def get_metadata(self, project: str, name: str) -> dict[str, Any]:
        raise errors.QueueDoesNotExist(name)

    async def create(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        return True

    async def post(self, project: str, queue: str, batch: Any, client_id: str) -> list[str]:
        self.posted.extend(batch)
        return [str(i) for i in range(len(batch))]


def make_ctx(settings: Settings, wakes: list[int],
             wake: Callable[[], None] | None = None) -> Context:
    service = Service(storage=FakeStorage(), limits=Limits(),  # type: ignore[arg-type]
                      pipeline=Pipeline.from_settings(settings),
                      wake_notifier=wake or (lambda: wakes.append(1)))
    return Context(service=service, project="p", client_id=str(uuid.uuid4()))


@pytest.fixture(autouse=True)
def clear_calls() -> None:
    CALLS.clear()


def test_names() -> None:
    assert names(None) == [] and names([]) == []
    assert names("a:B, c:D,") == ["a:B", "c:D"]
    assert names(["a:B", " "]) == ["a:B"]


class WantsTheService:
    """A stage written for the interface before the service was frozen."""

    def __init__(self, service: Service) -> None:
        self.service = service


def test_load_stage() -> None:
    assert isinstance(load_stage("tests.test_pipeline:NoArgs"), NoArgs)
    assert isinstance(load_stage("tests.test_pipeline.NoArgs"), NoArgs)
    for bad in ("nomodule_xyz:Thing", "tests.test_pipeline:Missing", "nocolon"):
        with pytest.raises(ValueError):
            load_stage(bad)


def test_a_stage_that_requires_arguments_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="requires service; a hook reaches the service"):
        load_stage("tests.test_pipeline:WantsTheService")


def test_the_service_cannot_be_changed_once_built() -> None:
    # Every request shares it: a later change would reach some and not others.
    ctx = make_ctx(Settings(), [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.service.wake_notifier = None  # type: ignore[misc]


async def test_hooks_run_around_the_operation_in_order() -> None:
    wakes: list[int] = []
    settings = Settings(message_pipeline=["tests.test_pipeline:Recorder"],
                        queue_pipeline="tests.test_pipeline:NoArgs")
    ctx = make_ctx(settings, wakes)
    result = await messages.post(ctx, "jobs", {"messages": [{"body": 1}]}, 10)
    assert CALLS == [("before_post", "jobs"), ("after_post", result)]
    assert wakes == [1]  # the notifier stage woke the delivery worker
    await queues.create(ctx, "jobs", {"a": 1})
    assert CALLS[-1] == ("before_create", {"name": "jobs", "document": {"a": 1}})


async def test_a_before_hook_rejects_and_nothing_is_stored() -> None:
    wakes: list[int] = []
    ctx = make_ctx(Settings(message_pipeline="tests.test_pipeline:Recorder"), wakes)
    with pytest.raises(errors.ValidationFailed):
        await messages.post(ctx, "jobs", {"reject": True}, 10)
    assert ctx.storage.posted == []  # type: ignore[attr-defined]
    assert wakes == [] and CALLS == [("before_post", "jobs")]


async def test_no_stages_no_cost() -> None:
    ctx = make_ctx(Settings(), [])
    pipeline = ctx.service.pipeline
    assert isinstance(pipeline.stages["message"][0], Notifier)
    assert not pipeline.wants("message", "list")
    assert pipeline.wants("message", "post")
    assert not pipeline.wants("queue", "create")


async def test_a_post_its_driver_says_wrote_no_delivery_wakes_no_one() -> None:
    """A driver that knows its post wrote no delivery says so (PostgreSQL):
    no wake-up, so no lease statement for nothing. Said or not, each post's
    answer is read once."""
    wakes: list[int] = []
    ctx = make_ctx(Settings(), wakes)
    for said, woken in ((False, []), (None, [1]), (True, [1, 1])):
        if said is not None:
            POST_WROTE_DELIVERIES.set(said)
        await Notifier().after_post(ctx, [])
        assert wakes == woken
        assert POST_WROTE_DELIVERIES.get() is None


async def test_a_failing_wake_up_does_not_fail_the_post() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    ctx = make_ctx(Settings(), [], wake=broken)
    await messages.post(ctx, "jobs", {"messages": [{"body": 1}]}, 10)


def test_a_bad_stage_is_a_configuration_error(tmp_path: Any) -> None:
    from tidings.app import create_app

    settings = Settings(storage=f"sqlite:///{tmp_path}/t.db", message_pipeline="nope_xyz:Nope")
    with pytest.raises(ValueError):
        create_app(settings)


# --- the worked example on the notify server ----------------------------------------

SCHEMA = {"type": "object", "required": ["sku", "qty"],
          "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}


def test_json_schema_stage(nhttp: httpx.Client) -> None:
    assert nhttp.put("/v2/queues/orders", json={"json_schema": SCHEMA}).status_code == 201
    good = {"sku": "a-1", "qty": 2}
    resp = nhttp.post("/v2/queues/orders/messages", json={"messages": [{"body": good}]})
    assert resp.status_code == 201, resp.text
    bad = nhttp.post("/v2/queues/orders/messages",
                     json={"messages": [{"body": good}, {"body": {"sku": "b", "qty": 0}}]})
    assert bad.status_code == 400, bad.text
    assert bad.json()["title"] == "Invalid API request"
    assert "Message 1" in bad.json()["description"] and "qty" in bad.json()["description"]
    missing = nhttp.post("/v2/queues/orders/messages", json={"messages": [{"body": "x"}]})
    assert missing.status_code == 400
    # The whole post was refused: only the good one is stored.
    listing = nhttp.get("/v2/queues/orders/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listing["messages"]] == [good]
    # Queues without a schema are not checked.
    assert nhttp.post("/v2/queues/free/messages",
                      json={"messages": [{"body": "anything"}]}).status_code == 201


def test_json_schema_stage_with_an_invalid_schema(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/broken", json={"json_schema": {"type": 12}})
    resp = nhttp.post("/v2/queues/broken/messages", json={"messages": [{"body": 1}]})
    assert resp.status_code == 400
    assert "not a valid JSON schema" in resp.json()["description"]


def test_json_schema_stage_leaves_malformed_posts_to_validation(nhttp: httpx.Client) -> None:
    nhttp.put("/v2/queues/orders", json={"json_schema": SCHEMA})
    resp = nhttp.post("/v2/queues/orders/messages", json={"messages": "nope"})
    assert resp.status_code == 400 and resp.json()["title"] == "Invalid request body"


def test_notify_server_log_is_clean(notify_server: NotifyServer) -> None:
    assert "Traceback" not in notify_server.log_path.read_text()
