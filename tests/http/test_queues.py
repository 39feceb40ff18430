"""Queues: create, get, list, patch, delete, stats and purge."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.http.util import JSON_PATCH, assert_error, post_messages
from tests.support.server import ServerProcess
from tidings.auth import signed

RESERVED_DEFAULTS = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}


def names(http: httpx.Client, **params: object) -> list[str]:
    resp = http.get("/v2/queues", params=params)
    assert resp.status_code == 200, resp.text
    return [q["name"] for q in resp.json()["queues"]]


def patch(http: httpx.Client, queue: str, changes: object) -> httpx.Response:
    return http.patch(f"/v2/queues/{queue}", json=changes,
                      headers={"Content-Type": JSON_PATCH})


# --- create and get --------------------------------------------------------


def test_put_creates_then_204_with_location(http: httpx.Client) -> None:
    resp = http.put("/v2/queues/fizbit", json={"color": "red"})
    assert resp.status_code == 201
    assert resp.headers["location"] == "/v2/queues/fizbit"
    again = http.put("/v2/queues/fizbit", json={"color": "blue"})
    assert again.status_code == 204
    assert again.headers["location"] == "/v2/queues/fizbit"
    # An existing queue keeps its metadata.
    assert http.get("/v2/queues/fizbit").json()["color"] == "red"


def test_put_without_body(http: httpx.Client) -> None:
    assert http.put("/v2/queues/plain").status_code == 201
    assert http.get("/v2/queues/plain").json() == RESERVED_DEFAULTS
    assert names(http) == ["plain"]


def test_get_returns_metadata_and_reserved_defaults(http: httpx.Client) -> None:
    metadata = {"color": "red", "nested": {"a": [1, 2, None]}, "_default_message_ttl": 120}
    assert http.put("/v2/queues/q", json=metadata).status_code == 201
    body = http.get("/v2/queues/q").json()
    assert body == {**RESERVED_DEFAULTS, **metadata}


def test_missing_queue_is_lazy(http: httpx.Client) -> None:
    resp = http.get("/v2/queues/ghost")
    assert resp.status_code == 200
    assert resp.json() == RESERVED_DEFAULTS
    stats = http.get("/v2/queues/ghost/stats")
    assert stats.status_code == 200
    assert stats.json() == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    listing = http.get("/v2/queues/ghost/messages")
    assert listing.status_code == 200
    assert listing.json()["messages"] == []
    # None of these created it.
    assert names(http) == []


def test_head_queue_is_405(http: httpx.Client) -> None:
    http.put("/v2/queues/q")
    assert http.head("/v2/queues/q").status_code == 405


# --- listing ---------------------------------------------------------------


def test_listing_empty_project(http: httpx.Client) -> None:
    resp = http.get("/v2/queues")
    assert resp.status_code == 200
    assert resp.json()["queues"] == []


def test_listing_entries_and_default_limit(http: httpx.Client) -> None:
    for i in range(12):
        http.put(f"/v2/queues/q{i:02d}")
    body = http.get("/v2/queues").json()
    assert [q["name"] for q in body["queues"]] == [f"q{i:02d}" for i in range(10)]
    assert body["queues"][0] == {"name": "q00", "href": "/v2/queues/q00"}
    assert "metadata" not in body["queues"][0]


def test_listing_limit_and_paging_through_next_links(http: httpx.Client) -> None:
    expected = [f"q{i:02d}" for i in range(7)]
    for name in reversed(expected):
        http.put(f"/v2/queues/{name}")
    seen: list[str] = []
    url = "/v2/queues?limit=3"
    for _ in range(10):
        body = http.get(url).json()
        page = [q["name"] for q in body["queues"]]
        if not page:
            break
        assert len(page) <= 3
        seen += page
        nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
        assert len(nexts) == 1
        url = nexts[0]
    assert seen == expected


def test_listing_next_links_are_zaqars(http: httpx.Client) -> None:
    """The request's own parameters, in name order, and the marker; no
    limit unless the request gave one."""
    for name in ("a", "b", "c"):
        http.put(f"/v2/queues/{name}")
    links = {query: http.get(f"/v2/queues{query}").json()["links"]
             for query in ("", "?limit=2", "?detailed=true", "?limit=2&marker=a")}
    assert links == {
        "": [{"rel": "next", "href": "/v2/queues?marker=c"}],
        "?limit=2": [{"rel": "next", "href": "/v2/queues?limit=2&marker=b"}],
        "?detailed=true": [{"rel": "next", "href": "/v2/queues?detailed=true&marker=c"}],
        "?limit=2&marker=a": [{"rel": "next", "href": "/v2/queues?limit=2&marker=c"}],
    }


def test_queue_names_may_hold_dots(http: httpx.Client) -> None:
    # Zaqar 23's rule: ^[a-zA-Z0-9_.-]+$
    assert http.put("/v2/queues/app.events-1").status_code == 201
    post_messages(http, "app.events-1", 1)
    assert names(http) == ["app.events-1"]
    assert http.get("/v2/queues/app.events-1/stats").json()["messages"]["total"] == 1
    assert_error(http.put("/v2/queues/app:events"), 400, "Invalid queue identification")


def test_listing_marker_is_strictly_after(http: httpx.Client) -> None:
    for name in ("a", "b", "c", "d"):
        http.put(f"/v2/queues/{name}")
    assert names(http, marker="a") == ["b", "c", "d"]
    assert names(http, marker="c") == ["d"]
    assert names(http, marker="d") == []
    # An unknown marker pages from where it would sort, not from the top.
    assert names(http, marker="bb") == ["c", "d"]


def test_listing_empty_page_has_no_next_link(http: httpx.Client) -> None:
    http.put("/v2/queues/a")
    body = http.get("/v2/queues", params={"marker": "a"}).json()
    assert body["queues"] == []
    assert [link for link in body["links"] if link["rel"] == "next"] == []


def test_listing_detailed(http: httpx.Client) -> None:
    http.put("/v2/queues/a", json={"color": "red"})
    http.put("/v2/queues/b")
    body = http.get("/v2/queues", params={"detailed": "true"}).json()
    assert body["queues"] == [
        {"name": "a", "href": "/v2/queues/a", "metadata": {"color": "red"}},
        {"name": "b", "href": "/v2/queues/b", "metadata": {}},
    ]
    nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
    assert parse_qs(urlsplit(nexts[0]).query)["detailed"] == ["true"]
    plain = http.get("/v2/queues", params={"detailed": "false"}).json()
    assert all("metadata" not in q for q in plain["queues"])


def test_listing_name_filter(http: httpx.Client) -> None:
    for name in ("orders", "orders-eu", "billing", "audit"):
        http.put(f"/v2/queues/{name}")
    assert names(http, name="orders") == ["orders", "orders-eu"]
    assert names(http, name="billing") == ["billing"]
    assert names(http, name="nothing") == []


def test_listing_metadata_filters(http: httpx.Client) -> None:
    http.put("/v2/queues/a", json={"color": "red", "size": "big"})
    http.put("/v2/queues/b", json={"color": "blue", "size": "big"})
    http.put("/v2/queues/c", json={"color": "red", "size": "small"})
    http.put("/v2/queues/d")
    assert names(http, color="red") == ["a", "c"]
    assert names(http, size="big") == ["a", "b"]
    assert names(http, color="red", size="big") == ["a"]
    assert names(http, color="green") == []
    body = http.get("/v2/queues", params={"color": "red", "limit": 1}).json()
    nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
    assert [q["name"] for q in http.get(nexts[0]).json()["queues"]] == ["c"]


def test_listing_with_count(http: httpx.Client) -> None:
    for name in ("a", "b", "c"):
        http.put(f"/v2/queues/{name}", json={"team": "x" if name != "c" else "y"})
    body = http.get("/v2/queues", params={"with_count": "true", "limit": 1}).json()
    assert body["count"] == 3
    assert len(body["queues"]) == 1
    assert http.get("/v2/queues", params={"with_count": "true", "team": "x"}).json()["count"] == 2
    assert "count" not in http.get("/v2/queues").json()


def test_listing_is_per_project(http: httpx.Client, server_url: str,
                                headers: dict[str, str]) -> None:
    http.put("/v2/queues/mine")
    other = {**headers, "X-Project-ID": headers["X-Project-ID"] + "-other"}
    resp = httpx.get(server_url + "/v2/queues", headers=other)
    assert resp.json()["queues"] == []
    assert httpx.get(server_url + "/v2/queues/mine/stats", headers=other).json() == {
        "messages": {"claimed": 0, "free": 0, "total": 0}}


# --- patch -----------------------------------------------------------------


def test_patch_add_replace_remove(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red", "size": 1})
    resp = patch(http, "q", [
        {"op": "add", "path": "/metadata/shape", "value": "round"},
        {"op": "replace", "path": "/metadata/color", "value": "blue"},
        {"op": "remove", "path": "/metadata/size"},
    ])
    assert resp.status_code == 200, resp.text
    expected = {**RESERVED_DEFAULTS, "color": "blue", "shape": "round"}
    assert resp.json() == expected
    assert http.get("/v2/queues/q").json() == expected


def test_patch_reserved_key(http: httpx.Client) -> None:
    http.put("/v2/queues/q")
    resp = patch(http, "q", [{"op": "add", "path": "/metadata/_default_message_ttl",
                              "value": 300}])
    assert resp.status_code == 200
    assert resp.json()["_default_message_ttl"] == 300


@pytest.mark.parametrize("op", ["replace", "remove"])
def test_patch_missing_key_conflicts(http: httpx.Client, op: str) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    change = {"op": op, "path": "/metadata/nope"}
    if op == "replace":
        change["value"] = 1
    assert_error(patch(http, "q", [change]), 409, "Resource conflict")
    assert http.get("/v2/queues/q").json()["color"] == "red"


def test_patch_is_all_or_nothing(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    resp = patch(http, "q", [
        {"op": "add", "path": "/metadata/shape", "value": "round"},
        {"op": "remove", "path": "/metadata/nope"},
    ])
    assert_error(resp, 409, "Resource conflict")
    assert "shape" not in http.get("/v2/queues/q").json()


def test_patch_empty_list(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    resp = patch(http, "q", [])
    assert resp.status_code == 200
    assert resp.json() == {**RESERVED_DEFAULTS, "color": "red"}


def test_patch_wrong_content_type(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    resp = http.patch("/v2/queues/q",
                      json=[{"op": "add", "path": "/metadata/x", "value": 1}])
    assert_error(resp, 415, "415 Unsupported Media Type")
    assert "x" not in http.get("/v2/queues/q").json()


def test_patch_missing_queue_is_404(http: httpx.Client) -> None:
    resp = patch(http, "ghost", [{"op": "add", "path": "/metadata/x", "value": 1}])
    assert_error(resp, 404, "Not found")
    assert names(http) == []


# --- delete ----------------------------------------------------------------


def test_delete_queue(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    post_messages(http, "q", 1, 2)
    assert http.delete("/v2/queues/q").status_code == 204
    assert names(http) == []
    assert http.get("/v2/queues/q").json() == RESERVED_DEFAULTS
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 0
    # Deleting again (or a queue that never was) is fine.
    assert http.delete("/v2/queues/q").status_code == 204
    assert http.delete("/v2/queues/never").status_code == 204


# --- stats -----------------------------------------------------------------


def test_stats(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b", "c")
    claim = http.post("/v2/queues/q/claims?limit=1", json={"ttl": 60, "grace": 60})
    assert claim.status_code == 201
    claim_id = claim.headers["location"].rsplit("/", 1)[1]
    stats = http.get("/v2/queues/q/stats").json()["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    # Zaqar's fields exactly; the oldest is the claimed one.
    for label, message_id, body, claimed in (("oldest", ids[0], "a", claim_id),
                                             ("newest", ids[-1], "c", None)):
        entry = stats[label]
        assert set(entry) == {"age", "body", "claim_count", "claim_id", "created", "href",
                              "ttl"}
        assert entry["href"] == f"/v2/queues/q/messages/{message_id}"
        assert isinstance(entry["age"], int) and entry["age"] >= 0
        assert (entry["body"], entry["claim_id"]) == (body, claimed)
        assert entry["claim_count"] == (1 if claimed else 0)
        assert entry["ttl"] == 3600
        datetime.strptime(entry["created"], "%Y-%m-%dT%H:%M:%SZ")


def test_stats_of_empty_queue_have_no_oldest(http: httpx.Client) -> None:
    http.put("/v2/queues/q")
    assert http.get("/v2/queues/q/stats").json() == {
        "messages": {"claimed": 0, "free": 0, "total": 0}}


# --- purge -----------------------------------------------------------------


def test_purge_all(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"color": "red"})
    post_messages(http, "q", 1, 2)
    assert http.post("/v2/queues/q/purge").status_code == 204
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 0
    # The queue and its metadata stay.
    assert names(http) == ["q"]
    assert http.get("/v2/queues/q").json()["color"] == "red"


@pytest.mark.parametrize("types,emptied", [
    (["messages"], True),
    (["subscriptions"], False),
    (["messages", "subscriptions"], True),
])
def test_purge_resource_types(http: httpx.Client, types: list[str], emptied: bool) -> None:
    post_messages(http, "q", 1, 2)
    resp = http.post("/v2/queues/q/purge", json={"resource_types": types})
    assert resp.status_code == 204
    total = http.get("/v2/queues/q/stats").json()["messages"]["total"]
    assert total == (0 if emptied else 2)


def test_purge_unknown_type(http: httpx.Client) -> None:
    post_messages(http, "q", 1)
    resp = http.post("/v2/queues/q/purge", json={"resource_types": ["messages", "bogus"]})
    assert_error(resp, 400)
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 1


def test_purge_body_must_name_resource_types(http: httpx.Client) -> None:
    # As in Zaqar: no body purges everything; a body without resource_types is a 400.
    post_messages(http, "q", 1)
    assert_error(http.post("/v2/queues/q/purge", json={}), 400, "Invalid API request")
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 1


def test_purge_missing_queue(http: httpx.Client) -> None:
    assert http.post("/v2/queues/ghost/purge").status_code == 204
    assert names(http) == []


def test_patch_content_type_is_case_insensitive(http: httpx.Client) -> None:
    http.put("/v2/queues/q")
    resp = http.patch("/v2/queues/q",
                      json=[{"op": "add", "path": "/metadata/x", "value": 1}],
                      headers={"Content-Type": JSON_PATCH.upper() + "; charset=utf-8"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["x"] == 1


def test_listing_odd_filters_and_markers(http: httpx.Client) -> None:
    http.put("/v2/queues/a", json={'we"ird': "v", "n": 5})
    assert names(http, **{'we"ird': "v"}) == ["a"]
    assert names(http, **{"$.n": "5"}) == []
    assert names(http, n="5") == ["a"]
    assert names(http, marker="x" * 5000) == []
    assert names(http, name="%_") == []


# --- share (pre-signed URLs) ---------------------------------------------------


def test_share_works_without_a_configured_key(http: httpx.Client, server: ServerProcess
                                              ) -> None:
    """As in Zaqar (python-zaqarclient's test_signed_url): the session's
    server has no auth.secret_key; it signs with the key it generated and
    keeps beside its database (tests/storage/test_secrets.py)."""
    resp = http.post("/v2/queues/shared/share", json={"methods": ["GET", "POST"]})
    assert resp.status_code == 200, resp.text
    share = resp.json()
    assert share["paths"] == ["/v2/queues/shared/messages"]
    assert share["methods"] == ["GET", "POST"]
    database = urlsplit(server.storage).path.removeprefix("/")
    key = Path(f"{database}.signed-urls.key").read_text().strip().encode()
    assert share["signature"] == signed.signature(key, share["paths"], share["project"],
                                                  share["methods"], share["expires"])


def test_share_is_503_when_no_key_can_be_kept(tmp_path: Path, headers: dict[str, str]
                                              ) -> None:
    # Where the key file would be, a directory: the storage keeps no key.
    (tmp_path / "tidings.db.signed-urls.key").mkdir()
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                         log_path=tmp_path / "server.log").start()
    try:
        resp = httpx.post(f"{proc.url}/v2/queues/q/share", headers=headers, json={})
        body = assert_error(resp, 503)
        assert "auth.secret_key" in body["description"]
        # The rest works.
        assert httpx.put(f"{proc.url}/v2/queues/q", headers=headers).status_code == 201
    finally:
        proc.stop()
    assert "pre-signed URLs are off" in (tmp_path / "server.log").read_text()


# --- error titles, as Zaqar's ----------------------------------------------------


@pytest.mark.parametrize("changes", [
    [{"op": "move", "path": "/metadata/a", "value": 1}],
    [{"path": "/metadata/a", "value": 1}],
    [{"op": "add", "path": "/metadata/a"}],
    [{"op": "add", "path": "/name", "value": 1}],
])
def test_patch_errors_are_invalid_api_requests(http: httpx.Client, changes: list) -> None:
    http.put("/v2/queues/q")
    resp = http.patch("/v2/queues/q", json=changes, headers={"Content-Type": JSON_PATCH})
    assert_error(resp, 400, "Invalid API request")


@pytest.mark.parametrize("metadata", [
    {"_default_message_ttl": "x"}, {"_max_claim_count": "x"},
    {"_enable_encrypt_messages": "x"}, {"big": 2**64},
])
def test_metadata_of_the_wrong_type_is_an_invalid_body(http: httpx.Client,
                                                       metadata: dict) -> None:
    assert_error(http.put("/v2/queues/q", json=metadata), 400, "Invalid request body")


@pytest.mark.parametrize("document", [{"nothing": []}, [{"body": 1}]])
def test_post_bodies_without_messages_are_invalid_bodies(http: httpx.Client,
                                                         document: object) -> None:
    assert_error(http.post("/v2/queues/q/messages", json=document), 400,
                 "Invalid request body")
