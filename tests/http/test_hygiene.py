"""Error hygiene: no trace, path or SQL in any error body; a request id on
every response, and in every error log line.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess

LEAKS = ("Traceback", 'File "', ".py", "SELECT", "INSERT", "UPDATE ", "DELETE FROM",
         "sqlite3", "asyncpg", "redis.exceptions", "/work/", "site-packages")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def assert_clean(resp: httpx.Response) -> None:
    text = resp.text
    for leak in LEAKS:
        assert leak not in text, f"{resp.request.method} {resp.request.url}: {leak!r} in {text!r}"
    rid = resp.headers.get("X-Request-ID")
    assert rid is not None and REQUEST_ID.match(rid), (resp.request.url, rid)


def hdrs() -> dict[str, str]:
    return {"X-Project-ID": f"hyg-{uuid.uuid4().hex[:10]}", "Client-ID": str(uuid.uuid4())}


# (method, path, headers override (None: the defaults), json, raw content)
BAD_REQUESTS: list[tuple[str, str, dict[str, str] | None, Any, bytes | None]] = [
    ("GET", "/v2/queues", {}, None, None),  # no Client-ID nor project
    ("GET", "/v2/queues", {"Client-ID": "not-a-uuid", "X-Project-ID": "p"}, None, None),
    ("GET", "/v2/queues", {"Client-ID": str(uuid.uuid4()), "X-Project-ID": ""}, None, None),
    ("GET", "/v2/queues", {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "x" * 300}, None,
     None),
    ("GET", "/v2/queues?limit=abc", None, None, None),
    ("GET", "/v2/queues?limit=100000", None, None, None),
    ("GET", "/v2/queues?detailed=maybe", None, None, None),
    ("GET", "/v2/queues?marker=' OR 1=1 --", None, None, None),
    ("PUT", "/v2/queues/bad%20name", None, None, None),
    ("PUT", "/v2/queues/" + "q" * 100, None, None, None),
    ("PUT", "/v2/queues/q", None, None, b"{not json"),
    ("PUT", "/v2/queues/q", None, None, b"\xff\xfe\x00"),
    ("PUT", "/v2/queues/q", None, None, b"[" * 100_000),
    ("PUT", "/v2/queues/q", None, ["a", "list"], None),
    ("PUT", "/v2/queues/q", None, {"_default_message_ttl": "soon"}, None),
    ("PATCH", "/v2/queues/q", None, [{"op": "drop", "path": "/x"}], None),
    ("PATCH", "/v2/queues/missing-q",
     {"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
     None, b'[{"op": "add", "path": "/metadata/a", "value": 1}]'),
    ("POST", "/v2/queues/q/messages", None, {"messages": "nope"}, None),
    ("POST", "/v2/queues/q/messages", None, {"messages": []}, None),
    ("POST", "/v2/queues/q/messages", None, {"messages": [{"ttl": 10}]}, None),
    ("POST", "/v2/queues/q/messages", None, {"messages": [{"body": 1, "ttl": "x"}]}, None),
    ("POST", "/v2/queues/q/messages", None, {"messages": [{"body": 1, "ttl": 10**30}]}, None),
    ("POST", "/v2/queues/q/messages", None, None, b"x" * (300 * 1024)),
    ("POST", "/v2/queues/q/messages", {"Content-Type": "application/x-www-form-urlencoded"},
     None, b"a=b"),
    ("GET", "/v2/queues/q/messages/'; DROP TABLE messages; --", None, None, None),
    ("GET", "/v2/queues/q/messages/" + "f" * 500, None, None, None),
    ("GET", "/v2/queues/q/messages?ids=", None, None, None),
    ("GET", "/v2/queues/q/messages?ids=" + ",".join(["a"] * 50), None, None, None),
    ("DELETE", "/v2/queues/q/messages", None, None, None),
    ("DELETE", "/v2/queues/q/messages?pop=0", None, None, None),
    ("DELETE", "/v2/queues/q/messages?pop=5&ids=a", None, None, None),
    ("DELETE", "/v2/queues/q/messages/abc?claim_id=nope", None, None, None),
    ("POST", "/v2/queues/q/claims", None, {"ttl": 1}, None),
    ("POST", "/v2/queues/q/claims?limit=-1", None, {}, None),
    ("POST", "/v2/queues/q/claims", None, {"ttl": "x", "grace": []}, None),
    ("GET", "/v2/queues/q/claims/unknown", None, None, None),
    ("PATCH", "/v2/queues/q/claims/unknown", None, {"ttl": 100}, None),
    ("POST", "/v2/queues/q/subscriptions", None, {"subscriber": "gopher://x"}, None),
    ("POST", "/v2/queues/q/subscriptions", None, {"subscriber": 5, "ttl": -1}, None),
    ("GET", "/v2/queues/q/subscriptions/none-such", None, None, None),
    ("POST", "/v2/queues/q/purge", None, {"resource_types": ["everything"]}, None),
    ("POST", "/v2/queues/q/share", None, {"paths": ["../../etc/passwd"]}, None),
    ("GET", "/v2/no/such/route", None, None, None),
    ("GET", "/v2/queues/q/messages/a/b/c", None, None, None),
    ("PUT", "/v2/ping", None, None, None),  # 405
    ("TRACE", "/v2/queues", None, None, None),
    ("GET", "/v2/queues/%00%01", None, None, None),
    ("GET", "/v2/queues/\u00e9\u00e8", None, None, None),
]


@pytest.mark.parametrize("method,path,override,document,raw", BAD_REQUESTS,
                         ids=[f"{m} {p[:40]}" for m, p, *_ in BAD_REQUESTS])
def test_error_bodies_leak_nothing(server_url: str, method: str, path: str,
                                   override: dict[str, str] | None, document: Any,
                                   raw: bytes | None) -> None:
    request_headers = hdrs()
    if override is not None:
        request_headers = override if not override or "Client-ID" in override else {
            **request_headers, **override}
    with httpx.Client(base_url=server_url, timeout=10) as http:
        kwargs: dict[str, Any] = {"headers": request_headers}
        if document is not None:
            kwargs["json"] = document
        elif raw is not None:
            kwargs["content"] = raw
            kwargs["headers"] = {"Content-Type": "application/json", **request_headers}
        resp = http.request(method, path, **kwargs)
    # Mostly 4xx; a few are harmless (a marker is any string), share is 503
    # without a secret key: never an unexpected error.
    assert resp.status_code != 500, (resp.status_code, resp.text)
    assert_clean(resp)


# --- request ids ---------------------------------------------------------------


def test_every_response_carries_a_generated_request_id(http: httpx.Client) -> None:
    seen = set()
    for resp in (http.get("/v2/ping"), http.get("/v2/queues"), http.put("/v2/queues/r"),
                 http.get("/v2/nowhere"), http.get("/"), http.delete("/v2/queues/r")):
        rid = resp.headers["X-Request-ID"]
        assert REQUEST_ID.match(rid)
        seen.add(rid)
    assert len(seen) == 6


def test_a_clients_request_id_is_echoed(http: httpx.Client) -> None:
    resp = http.get("/v2/queues", headers={"X-Request-ID": "client-1.2_3"})
    assert resp.headers["X-Request-ID"] == "client-1.2_3"
    resp = http.get("/v2/nowhere", headers={"X-Request-ID": "on-a-404"})
    assert resp.headers["X-Request-ID"] == "on-a-404"


@pytest.mark.parametrize("sent,echoed", [
    ("abc<script>alert(1)</script>", "abcscriptalert1script"),
    ("a" * 100, "a" * 64),
    ("spaces and; semi", "spacesandsemi"),
    ("ok-\u00e9t\u00e9", "ok-t"),
])
def test_a_clients_request_id_is_sanitized(http: httpx.Client, sent: str, echoed: str) -> None:
    resp = http.get("/v2/queues", headers={"X-Request-ID": sent.encode()})
    assert resp.headers["X-Request-ID"] == echoed


def test_an_unusable_request_id_is_replaced(http: httpx.Client) -> None:
    resp = http.get("/v2/queues", headers={"X-Request-ID": "<>!@#$%^&*()"})
    rid = resp.headers["X-Request-ID"]
    assert REQUEST_ID.match(rid) and rid != "<>!@#$%^&*()"


# --- storage failures -----------------------------------------------------------


def log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[ServerProcess]:
    storage = (f"faulty+sqlite:///{tmp_path}/f.db?error_rate=1&seed=1"
               "&ops=messages.post,claims.create,queues.stats")
    proc = ServerProcess(storage=storage, log_path=tmp_path / "server.log")
    proc.start()
    yield proc
    proc.stop()


def test_storage_failures_answer_503_without_details_and_log_the_request_id(
        faulty_server: ServerProcess) -> None:
    with httpx.Client(base_url=faulty_server.url, headers=hdrs(), timeout=10) as http:
        calls = [
            ("POST", "/v2/queues/q/messages", {"messages": [{"body": 1}]}),
            ("POST", "/v2/queues/q/claims", {}),
            ("GET", "/v2/queues/q/stats", None),
        ]
        for n, (method, path, document) in enumerate(calls):
            rid = f"faulty-{n}"
            resp = http.request(method, path, json=document, headers={"X-Request-ID": rid})
            assert resp.status_code == 503, resp.text
            assert resp.headers["X-Request-ID"] == rid
            assert_clean(resp)
    lines = log_lines(faulty_server.log_path)  # type: ignore[arg-type]
    for n in range(len(calls)):
        assert any(f"faulty-{n}" in line and "WARNING" in line for line in lines), lines[-20:]


@pytest.fixture
def corrupted_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/t.db", log_path=tmp_path / "server.log")
    proc.start()
    yield proc, tmp_path
    proc.stop()


def test_a_broken_database_leaks_nothing_and_errors_name_their_request(
        corrupted_server: tuple[ServerProcess, Path]) -> None:
    proc, base = corrupted_server
    with httpx.Client(base_url=proc.url, headers=hdrs(), timeout=10) as http:
        assert http.put("/v2/queues/q").status_code == 201
        assert http.post("/v2/queues/q/messages",
                         json={"messages": [{"body": 1}]}).status_code == 201
        # Overwrite the database under the running server.
        for name in ("t.db", "t.db-wal"):
            path = base / name
            if path.exists():
                size = max(path.stat().st_size, 8192)
                with open(path, "r+b") as fh:
                    fh.write(os.urandom(size))
        failed = []
        for n, (method, path, document) in enumerate([
            ("GET", "/v2/queues", None),
            ("POST", "/v2/queues/q/messages", {"messages": [{"body": 2}]}),
            ("GET", "/v2/queues/q/messages?echo=true", None),
            ("GET", "/v2/queues/q/stats", None),
            ("POST", "/v2/queues/q/claims", {}),
            ("PUT", "/v2/queues/other", None),
        ]):
            rid = f"broken-{n}"
            resp = http.request(method, path, json=document, headers={"X-Request-ID": rid})
            assert_clean(resp)
            assert resp.headers["X-Request-ID"] == rid
            if resp.status_code >= 500:
                failed.append(rid)
    assert failed, "the broken database never failed a request"
    lines = log_lines(proc.log_path)  # type: ignore[arg-type]
    for rid in failed:
        assert any(rid in line and ("ERROR" in line or "WARNING" in line) for line in lines), (
            rid, lines[-30:])
    # Every error line written for a request names it.
    for line in lines:
        if " ERROR tidings.transport" in line or " WARNING tidings.transport" in line:
            assert re.search(r"\[(broken-\d|req-[0-9a-f]+)\]", line), line
