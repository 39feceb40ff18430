"""Schema-based fuzzing: schemathesis generates requests from the OpenAPI
document (transport/http/openapi.py) for every operation and checks each
answer of a live server: no 5xx, a documented status and content type, and
a body that matches the documented schema.

A dedicated server has what the session's lacks so that no operation is a
503 by design: a secret key (queue share), an encryption key
(``_enable_encrypt_messages``); its delivery worker is off and webhooks to
127.0.0.1 are allowed, so subscriptions reach nothing and nothing outside.

Each case runs in a fresh project. Before a case on a queue or topic,
``seed`` posts two messages there (from another client, so a listing sees
them); every other case on a message, claim or subscription item uses a
real id (a posted message, a claim of one, a mailto subscription) instead
of the generated one, so the happy paths are fuzzed too, not only the 404s.

Adjustments to the document, for the test only: ``wait`` (long polling)
is at most 1 s, and subscribers are drawn from a few local or mailto URLs
(a generated host name would be looked up in DNS).

FUZZ_EXAMPLES sets the examples per operation (default 15);
FUZZ_MODES=positive,negative adds invalid inputs (slower; the
suite runs the positive ones). Not TIDINGS_*: the server reads those.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.server import ServerProcess
from tidings.config import Limits
from tidings.transport.http import openapi

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
MODES = [GenerationMode(mode.strip())
         for mode in os.environ.get("FUZZ_MODES", "positive").split(",")]
SUBSCRIBERS = ["http://127.0.0.1:9/hook", "https://127.0.0.1:9/a?b=c",
               "mailto:ops@example.com", "mailto:someone+tag@example.org?subject=hi"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
STATS: dict[str, Any] = {"examples": 0, "operations": set(), "statuses": {}, "seconds": 0.0}


def fuzz_document() -> dict[str, Any]:
    document = copy.deepcopy(openapi.build(Limits()))
    schemas = document["components"]["schemas"]
    for name in ("SubscriptionRequest", "SubscriptionUpdate"):
        schemas[name]["properties"]["subscriber"] = {"type": "string", "enum": SUBSCRIBERS}
    for item in document["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("name") == "wait":
                    param["schema"] = {**param["schema"], "maximum": 1}
    return document


# The PATCH body's and the home document's media types are JSON by other names.
schemathesis.serializer.alias(openapi.JSON_PATCH, "application/json")


@schemathesis.deserializer(openapi.JSON_HOME)
def json_home(ctx: Any, response: Any) -> Any:
    return json.loads(response.content)


schema = schemathesis.openapi.from_dict(fuzz_document())
schema.config.generation.update(modes=MODES, max_examples=EXAMPLES,
                                deterministic=True)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("fuzz")
    proc = ServerProcess(
        storage=f"sqlite:///{base}/tidings.db", log_path=base / "server.log",
        env={"TIDINGS_SQLITE_SYNC": "off",
             "TIDINGS_AUTH__SECRET_KEY": "fuzz-secret",
             "TIDINGS_ENCRYPTION__KEY": base64.b64encode(b"k" * 32).decode(),
             "TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER": "false",
             "TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.0/8"},
    )
    proc.start()
    yield proc
    proc.stop()
    log = (base / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def seeder(fuzz_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not STATS["examples"]:
        return
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(STATS["statuses"].items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\nschemathesis: {STATS['examples']} examples over "
            f"{len(STATS['operations'])} operations in {STATS['seconds']:.1f} s "
            f"(statuses {statuses})")


_turn = itertools.count()


def seed(http: httpx.Client, headers: dict[str, str], params: dict[str, Any]) -> None:
    """Give the case's queue or topic two messages, and every other case
    real ids for its message, claim or subscription."""
    name = params.get("queue_name") or params.get("topic_name")
    if name is None:
        return
    root = "/v2/queues" if "queue_name" in params else "/v2/topics"
    base = f"{root}/{name}"
    other = {**headers, "Client-ID": str(uuid.uuid4())}
    posted = http.post(base + "/messages", headers=other, json={
        "messages": [{"body": {"n": 1}}, {"body": "two", "ttl": 120}]})
    if posted.status_code != 201:
        return  # a name made invalid on purpose (negative mode)
    if next(_turn) % 2:
        return  # keep the generated ids
    if "message_id" in params:
        params["message_id"] = posted.json()["resources"][0].rsplit("/", 1)[1]
    if "claim_id" in params:
        claimed = http.post(base + "/claims?limit=1", headers=other, json={})
        assert claimed.status_code == 201, claimed.text
        params["claim_id"] = claimed.headers["Location"].rsplit("/", 1)[1]
    if "subscription_id" in params:
        made = http.post(base + "/subscriptions", headers=other,
                         json={"subscriber": "mailto:seed@example.com", "ttl": 3600})
        assert made.status_code == 201, made.text
        params["subscription_id"] = made.json()["subscription_id"]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_api(case: schemathesis.Case, fuzz_server: ServerProcess, seeder: httpx.Client
             ) -> None:
    headers = {"X-Project-ID": f"fuzz-{uuid.uuid4().hex[:12]}", "Client-ID": str(uuid.uuid4())}
    started = time.monotonic()
    if case.path_parameters:
        seed(seeder, headers, case.path_parameters)
    response = case.call_and_validate(base_url=fuzz_server.url, headers=headers,
                                      checks=CHECKS, timeout=10)
    STATS["seconds"] += time.monotonic() - started
    STATS["examples"] += 1
    STATS["operations"].add(f"{case.method} {case.path}")
    STATS["statuses"][response.status_code] = STATS["statuses"].get(response.status_code,
                                                                    0) + 1
