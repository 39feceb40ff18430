"""Versions, home document, ping and health; routing errors."""

from __future__ import annotations

import uuid

import httpx

from tests.http.util import assert_error


def test_versions_document(server_url: str) -> None:
    resp = httpx.get(server_url + "/")
    assert resp.status_code == 300
    versions = resp.json()["versions"]
    assert versions and versions[0]["id"] == "2"
    assert versions[0]["status"] == "CURRENT"
    assert {"href": "/v2/", "rel": "self"} in versions[0]["links"]


def test_home_document(http: httpx.Client) -> None:
    resp = http.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json-home")
    resources = resp.json()["resources"]
    for rel in ("queues", "queue", "queue_stats", "messages", "message", "claims", "claim",
                "ping", "health"):
        assert "rel/" + rel in resources, rel
    assert resources["rel/queue"]["href-template"] == "/v2/queues/{queue_name}"
    # As Zaqar's: a claim's methods are three relations.
    for rel, allowed in (("claim", ["GET"]), ("patch_claim", ["PATCH"]),
                         ("delete_claim", ["DELETE"])):
        assert resources["rel/" + rel]["hints"]["allow"] == allowed
        assert resources["rel/" + rel]["href-template"] == (
            "/v2/queues/{queue_name}/claims/{claim_id}")


def test_home_document_without_slash(http: httpx.Client) -> None:
    resp = http.get("/v2")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json-home")


def test_ping(http: httpx.Client) -> None:
    resp = http.get("/v2/ping")
    assert resp.status_code == 204
    assert resp.content == b""
    assert http.head("/v2/ping").status_code == 204


def test_ping_needs_headers(server_url: str) -> None:
    assert_error(httpx.get(server_url + "/v2/ping", headers={"X-Project-ID": "p"}),
                 400, "Missing header value")
    assert_error(httpx.get(server_url + "/v2/ping", headers={"Client-ID": str(uuid.uuid4())}),
                 400, "Project-Id Missing")


def test_health(http: httpx.Client) -> None:
    resp = http.get("/v2/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["storage_reachable"] is True
    assert isinstance(body["driver"], str)
    assert http.head("/v2/health").status_code == 204


def test_unknown_route(http: httpx.Client) -> None:
    body = assert_error(http.get("/v2/nothing-here"), 404, own=False)
    assert body["title"] == "404 Not Found"


def test_wrong_method(http: httpx.Client) -> None:
    resp = http.post("/v2/ping")
    body = assert_error(resp, 405, own=False)
    assert body["title"] == "405 Method Not Allowed"
    assert "GET" in resp.headers["allow"]


def test_queue_head_is_not_allowed(http: httpx.Client) -> None:
    resp = http.head("/v2/queues/q")
    assert resp.status_code == 405
    assert "GET" in resp.headers["allow"]
    assert "HEAD" not in resp.headers["allow"]


def test_keep_alive_is_reliable(http: httpx.Client) -> None:
    # One connection, many requests: none may fail at the transport level.
    for i in range(200):
        assert http.get("/v2/ping").status_code == 204, i


def test_project_id_of_256_characters(server_url: str, headers: dict[str, str]) -> None:
    long_project = {**headers, "X-Project-ID": "p" * 255 + headers["Client-ID"][:1]}
    assert len(long_project["X-Project-ID"]) == 256
    resp = httpx.put(server_url + "/v2/queues/q", headers=long_project)
    assert resp.status_code in (201, 204)
    listing = httpx.get(server_url + "/v2/queues", headers=long_project).json()
    assert "q" in [q["name"] for q in listing["queues"]]


def test_xml_is_not_acceptable(http: httpx.Client) -> None:
    # As Zaqar: JSON only.
    resp = http.get("/v2/queues", headers={"Accept": "application/xml"})
    assert resp.status_code == 406
    assert resp.json()["title"] == "406 Not Acceptable"
    for accept in ("application/json", "*/*", "application/json-home, text/html"):
        assert http.get("/v2/queues", headers={"Accept": accept}).status_code == 200
