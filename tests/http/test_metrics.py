"""GET /metrics and the access log, against dedicated server processes.

A known workload runs once against a fresh server; the counters of
/metrics must move by exactly what it did, the access log must hold one
line per request with its request id, and the depth sampler must report
the queues it left behind.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerProcess

SECRET = "BODY-MUST-NOT-BE-LOGGED-7f3a"
QUEUE = "/v2/queues/{queue_name}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, prefix: str) -> dict[tuple[str, frozenset], float]:
    """What moved among the samples named ``prefix...``."""
    moved = {}
    for key, now in after.items():
        if key[0].startswith(prefix):
            change = now - before.get(key, 0.0)
            if change:
                moved[key] = change
    return moved


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with JSON access lines in a file and a fast depth sampler
    that labels only the deepest queue; the workload has run against it."""
    base = tmp_path_factory.mktemp("metrics")
    access = base / "access.log"
    proc = ServerProcess(storage=f"sqlite:///{base}/tidings.db", log_path=base / "server.log",
                         env={"TIDINGS_LOG_FORMAT": "json",
                              "TIDINGS_LOGGING__ACCESS_LOG_FILE": str(access),
                              "TIDINGS_METRICS__SAMPLE_INTERVAL": "0.2",
                              "TIDINGS_METRICS__SAMPLE_TOP_QUEUES": "1"})
    proc.start()
    project = f"met-{uuid.uuid4().hex[:8]}"
    headers = {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}
    try:
        with httpx.Client(base_url=proc.url, headers=headers, timeout=10) as client:
            before = scrape(client)
            sent: list[tuple[str, str, str, int]] = []  # (request id, method, path, status)

            def call(method: str, path: str, status: int, **kw: Any) -> httpx.Response:
                rid = f"wl-{len(sent)}-{uuid.uuid4().hex[:6]}"
                resp = client.request(method, path, headers={"X-Request-ID": rid}, **kw)
                assert resp.status_code == status, (method, path, resp.text)
                assert resp.headers["X-Request-ID"] == rid
                sent.append((rid, method, path, status))
                return resp

            call("PUT", "/v2/queues/q1", 201)
            call("PUT", "/v2/queues/q2", 201)
            call("POST", "/v2/queues/q1/messages", 201,
                 json={"messages": [{"body": {"n": i, "s": SECRET}} for i in range(3)]})
            call("POST", "/v2/queues/q2/messages", 201,
                 json={"messages": [{"body": SECRET}, {"body": SECRET}]})
            claim = call("POST", "/v2/queues/q1/claims?limit=3", 201,
                         json={"ttl": 300, "grace": 60}).json()
            assert len(claim["messages"]) == 3
            for message in claim["messages"][:2]:
                call("DELETE", message["href"], 204)
            call("GET", "/v2/no/such/route", 404)
            call("POST", "/v2/queues/q1/messages", 400, json={"messages": [{"ttl": 60}]})
            # One without a request id: the generated one is logged too.
            generated = client.get("/v2/ping").headers["X-Request-ID"]
            after = scrape(client)
            yield {"proc": proc, "client": client, "before": before, "after": after,
                   "sent": sent, "generated": generated, "access": access,
                   "log": base / "server.log", "project": project}
    finally:
        proc.stop()


def test_request_counters_match_the_workload(observed: dict[str, Any]) -> None:
    moved = delta(observed["before"], observed["after"], "tidings_http_requests_total")
    name = "tidings_http_requests_total"
    assert moved == {
        (name, labels(method="PUT", route=QUEUE, status="201")): 2,
        (name, labels(method="POST", route=QUEUE + "/messages", status="201")): 2,
        (name, labels(method="POST", route=QUEUE + "/messages", status="400")): 1,
        (name, labels(method="POST", route=QUEUE + "/claims", status="201")): 1,
        (name, labels(method="DELETE", route=QUEUE + "/messages/{message_id}",
                      status="204")): 2,
        (name, labels(method="GET", route="unmatched", status="404")): 1,
        (name, labels(method="GET", route="/v2/ping", status="204")): 1,
        # The first scrape is counted once answered: the second one shows it.
        (name, labels(method="GET", route="/metrics", status="200")): 1,
    }
    durations = delta(observed["before"], observed["after"],
                      "tidings_http_request_duration_seconds_count")
    assert sum(durations.values()) == 11
    hist = "tidings_http_request_duration_seconds_count"
    assert durations[(hist, labels(method="POST", route=QUEUE + "/messages"))] == 3


def test_message_counters_match_the_workload(observed: dict[str, Any]) -> None:
    before, after = observed["before"], observed["after"]
    assert value(after, "tidings_messages_posted_total") - \
        value(before, "tidings_messages_posted_total") == 5
    assert value(after, "tidings_messages_claimed_total") - \
        value(before, "tidings_messages_claimed_total") == 3
    moved = delta(before, after, "tidings_messages_deleted_total")
    assert moved == {("tidings_messages_deleted_total", labels(via="delete")): 2}


def test_storage_calls_are_timed_per_driver_and_operation(observed: dict[str, Any]) -> None:
    before, after = observed["before"], observed["after"]
    count = "tidings_storage_operation_duration_seconds_count"

    def calls(op: str) -> float:
        return (value(after, count, driver="sqlite", op=op)
                - value(before, count, driver="sqlite", op=op))

    # The 400 is refused before the storage is asked.
    assert calls("messages.post") == 2
    assert calls("claims.create") == 1
    assert calls("messages.delete") == 2
    assert calls("queues.create") == 2
    assert not delta(before, after, "tidings_storage_errors_total")


def test_one_access_line_per_request_in_json(observed: dict[str, Any]) -> None:
    lines = [json.loads(line) for line in
             observed["access"].read_text().splitlines() if line.strip()]
    by_id = Counter(line["request_id"] for line in lines)
    for rid, method, path, status in observed["sent"]:
        assert by_id[rid] == 1, rid
        line = next(item for item in lines if item["request_id"] == rid)
        assert line["method"] == method
        assert line["path"] == path.split("?")[0]
        assert line["status"] == status
        assert line["project"] == observed["project"]
        assert line["duration_ms"] >= 0
    assert by_id[observed["generated"]] == 1
    # Every line is a request: nothing else is written to the access log.
    assert set(lines[0]) == {"time", "level", "logger", "request_id", "message", "method",
                             "path", "route", "status", "duration_ms", "project"}
    assert lines[0]["logger"] == "tidings.access" and lines[0]["level"] == "INFO"


def test_every_server_line_is_json(observed: dict[str, Any]) -> None:
    """log_format = "json": uvicorn's lines and the start line too."""
    lines = [json.loads(line) for line in
             Path(observed["log"]).read_text().splitlines() if line.strip()]
    assert {"uvicorn.error", "tidings"} <= {line["logger"] for line in lines}
    for line in lines:
        assert {"time", "level", "logger", "request_id", "message"} <= set(line)
    started = [line["message"] for line in lines if line["logger"] == "tidings"
               and line["message"].startswith("tidings ")]
    assert len(started) == 1
    assert "storage sqlite at sqlite:///" in started[0] and "1 worker" in started[0]


def test_no_message_body_is_logged(observed: dict[str, Any]) -> None:
    assert SECRET not in observed["access"].read_text()
    assert SECRET not in Path(observed["log"]).read_text()


def _wait_for_depths(client: httpx.Client, done: Callable[[Samples], bool],
                     timeout: float = 10.0) -> Samples:
    """Scrape until a depth sample taken after the workload shows (a sample
    taken between its posts and its claim would show q1 deeper)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(client)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_depth_gauges_after_the_sampler_ran(observed: dict[str, Any]) -> None:
    project = observed["project"]
    samples = _wait_for_depths(observed["client"], lambda samples: value(
        samples, "tidings_queue_messages", project="_other", queue="_other",
        state="claimed") == 1)
    assert value(samples, "tidings_queues_sampled") == 2
    depth = "tidings_queue_messages"
    # q2 (2 free) is the deepest: the only one labelled (sample_top_queues=1).
    assert value(samples, depth, project=project, queue="q2", state="free") == 2
    assert value(samples, depth, project=project, queue="q2", state="claimed") == 0
    assert (depth, labels(project=project, queue="q2", state="free")) in samples
    assert (depth, labels(project=project, queue="q1", state="claimed")) not in samples
    # q1 (one message left, claimed) is summed into _other.
    assert value(samples, depth, project="_other", queue="_other", state="claimed") == 1
    assert value(samples, depth, project="_other", queue="_other", state="free") == 0
    age = "tidings_queue_oldest_message_age_seconds"
    assert (age, labels(project=project, queue="q2")) in samples
    assert value(samples, age, project=project, queue="q2") >= 0
    labelled = {dict(key[1])["queue"] for key in samples if key[0] == depth}
    assert labelled == {"q2", "_other"}


def test_metrics_need_no_identifying_headers(observed: dict[str, Any]) -> None:
    resp = httpx.get(observed["proc"].url + "/metrics", timeout=10)
    assert resp.status_code == 200
    assert "tidings_messages_posted_total" in resp.text
    assert resp.headers["X-Request-ID"]


def test_dead_lettered_counter_counts_each_message_a_claim_moved(tmp_path: Path) -> None:
    # A server of its own: the workload above must stay exactly as counted.
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                         log_path=tmp_path / "server.log")
    proc.start()
    headers = {"X-Project-ID": "dl-p", "Client-ID": str(uuid.uuid4())}
    policy = {"_max_claim_count": 1, "_dead_letter_queue": "dlq"}
    try:
        with httpx.Client(base_url=proc.url, headers=headers, timeout=10) as client:

            def claim(queue: str, status: int) -> httpx.Response:
                resp = client.post(f"/v2/queues/{queue}/claims?limit=5",
                                   json={"ttl": 300, "grace": 60})
                assert resp.status_code == status, resp.text
                return resp

            def poison(queue: str, count: int) -> None:
                """``count`` messages claimed once (the limit), then released."""
                assert client.put(f"/v2/queues/{queue}", json=policy).status_code == 201
                assert client.post(f"/v2/queues/{queue}/messages", json={"messages": [
                    {"body": i} for i in range(count)]}).status_code == 201
                released = claim(queue, 201)
                assert len(released.json()["messages"]) == count
                assert client.delete(released.headers["Location"]).status_code == 204

            poison("q1", 3)
            poison("q2", 2)
            assert client.post("/v2/queues/q1/messages",
                               json={"messages": [{"body": "fresh"}]}).status_code == 201
            before = scrape(client)
            # Three moved and the fresh one claimed; then two moved, none claimed.
            assert [m["body"] for m in claim("q1", 201).json()["messages"]] == ["fresh"]
            claim("q2", 204)
            claim("q1", 204)  # nothing left: nothing moved
            after = scrape(client)
            dlq = client.get("/v2/queues/dlq/stats").json()["messages"]
    finally:
        proc.stop()
    name = "tidings_messages_dead_lettered_total"
    assert value(before, name) == 0 and (name, frozenset()) in before
    assert value(after, name) == 5 == dlq["total"]
    assert value(after, "tidings_messages_claimed_total") - \
        value(before, "tidings_messages_claimed_total") == 1


GC_REMOVED = "tidings_gc_removed_total"
GC_KINDS = ("messages", "claims", "subscriptions", "deliveries")


def test_gc_counters_exist_at_zero_before_any_gc(observed: dict[str, Any]) -> None:
    # The observed server never collects (gc_interval 0): every kind is
    # still there, at 0, and no other series of the family is.
    for samples in (observed["before"], observed["after"]):
        gc = {dict(key[1])["kind"]: count for key, count in samples.items()
              if key[0] == GC_REMOVED}
        assert gc == dict.fromkeys(GC_KINDS, 0.0)


def test_gc_counts_expired_messages_by_kind(tmp_path: Path) -> None:
    # A server of its own whose gc runs every 0.2 s and whose messages may
    # live 1 s: the only clock a server process has is the real one.
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                         log_path=tmp_path / "server.log",
                         env={"TIDINGS_GC_INTERVAL": "0.2",
                              "TIDINGS_LIMITS__MIN_MESSAGE_TTL": "1"})
    proc.start()
    headers = {"X-Project-ID": "gc-p", "Client-ID": str(uuid.uuid4())}
    try:
        with httpx.Client(base_url=proc.url, headers=headers, timeout=10) as client:
            assert client.post("/v2/queues/q/messages", json={"messages": [
                {"body": i, "ttl": 1} for i in range(3)] + [
                {"body": "kept", "ttl": 3600}]}).status_code == 201
            deadline = time.monotonic() + 10
            while True:
                after = scrape(client)
                if value(after, GC_REMOVED, kind="messages") >= 3 or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            left = client.get("/v2/queues/q/messages?echo=true").json()["messages"]
    finally:
        proc.stop()
    assert {kind: value(after, GC_REMOVED, kind=kind) for kind in GC_KINDS} == {
        "messages": 3, "claims": 0, "subscriptions": 0, "deliveries": 0}
    assert [m["body"] for m in left] == ["kept"]


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """Text access lines on standard error (the server log); metrics off; a
    default project for requests without X-Project-ID."""
    base = tmp_path_factory.mktemp("metrics-text")
    proc = ServerProcess(storage=f"sqlite:///{base}/tidings.db", log_path=base / "server.log",
                         env={"TIDINGS_METRICS__ENABLED": "false",
                              "TIDINGS_AUTH__NOAUTH_PROJECT": "fallback-p"})
    proc.start()
    try:
        yield proc, base / "server.log"
    finally:
        proc.stop()


def test_access_line_names_the_default_project(text_server: tuple[ServerProcess, Path]
                                               ) -> None:
    proc, log = text_server
    headers = {"Client-ID": str(uuid.uuid4()), "X-Request-ID": "default-project-1"}
    assert httpx.put(proc.url + "/v2/queues/dq", headers=headers, timeout=10).status_code == 201
    deadline = time.monotonic() + 5
    while "[default-project-1]: " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in log.read_text().splitlines()
             if "[default-project-1]: " in line]
    assert len(lines) == 1 and lines[0].endswith(" project=fallback-p")


def test_text_access_lines_and_metrics_disabled(text_server: tuple[ServerProcess, Path]
                                                ) -> None:
    proc, log = text_server
    headers = {"X-Project-ID": "text-p", "Client-ID": str(uuid.uuid4()),
               "X-Request-ID": "text-line-1"}
    resp = httpx.post(proc.url + "/v2/queues/tq/messages", headers=headers, timeout=10,
                      json={"messages": [{"body": SECRET}]})
    assert resp.status_code == 201
    assert httpx.get(proc.url + "/metrics", timeout=10).status_code == 404
    deadline = time.monotonic() + 5
    while "[text-line-1]: " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in log.read_text().splitlines() if "[text-line-1]: " in line]
    assert len(lines) == 1
    # The server's text format: time, level, logger, [request id]: message.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO tidings\.access "
                        r"\[text-line-1\]: method=POST path=/v2/queues/tq/messages "
                        r"route=/v2/queues/\{queue_name\}/messages status=201 "
                        r"duration_ms=[0-9.]+ project=text-p", lines[0]), lines[0]
    assert " project=text-p" in lines[0] and " duration_ms=" in lines[0]
    assert SECRET not in log.read_text()
