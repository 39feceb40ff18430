"""Claims: create, get, renew, release, and dead-lettering."""

from __future__ import annotations

import httpx

from tests.http.util import assert_error, list_all, post_messages


def test_claim_create(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b", "c")
    resp = http.post("/v2/queues/q/claims", params={"limit": 2},
                     json={"ttl": 120, "grace": 90})
    assert resp.status_code == 201, resp.text
    location = resp.headers["location"]
    assert location.startswith("/v2/queues/q/claims/")
    claim_id = location.rsplit("/", 1)[1]
    assert claim_id
    messages = resp.json()["messages"]
    assert [m["id"] for m in messages] == ids[:2]
    for message in messages:
        assert message["href"] == f"/v2/queues/q/messages/{message['id']}?claim_id={claim_id}"
        assert message["body"] in ("a", "b")
        assert isinstance(message["ttl"], int)
        assert isinstance(message["age"], int)


def test_claim_defaults(http: httpx.Client) -> None:
    post_messages(http, "q", *range(12))
    resp = http.post("/v2/queues/q/claims", json={})
    assert resp.status_code == 201
    assert len(resp.json()["messages"]) == 10
    claim = http.get(resp.headers["location"]).json()
    assert claim["ttl"] == 300


def test_claim_without_body(http: httpx.Client) -> None:
    post_messages(http, "q", "a")
    resp = http.post("/v2/queues/q/claims")
    assert resp.status_code == 201
    assert len(resp.json()["messages"]) == 1


def test_claim_nothing_is_204(http: httpx.Client) -> None:
    resp = http.post("/v2/queues/ghost/claims", json={"ttl": 60, "grace": 60})
    assert resp.status_code == 204
    assert resp.content == b""
    http.put("/v2/queues/empty")
    assert http.post("/v2/queues/empty/claims", json={}).status_code == 204
    # Claimed messages are not claimable again.
    post_messages(http, "q", "a")
    assert http.post("/v2/queues/q/claims", json={}).status_code == 201
    assert http.post("/v2/queues/q/claims", json={}).status_code == 204


def test_claim_limit_twenty(http: httpx.Client) -> None:
    post_messages(http, "q", *range(25))
    resp = http.post("/v2/queues/q/claims", params={"limit": 20}, json={})
    assert resp.status_code == 201
    assert len(resp.json()["messages"]) == 20


def test_get_claim(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    resp = http.post("/v2/queues/q/claims", json={"ttl": 100, "grace": 60})
    location = resp.headers["location"]
    claim_id = location.rsplit("/", 1)[1]
    got = http.get(location)
    assert got.status_code == 200
    claim = got.json()
    assert set(claim) == {"age", "href", "messages", "ttl"}  # Zaqar's: no id, no grace
    assert claim["ttl"] == 100
    assert isinstance(claim["age"], int) and claim["age"] >= 0
    assert claim["href"] == location
    assert [m["id"] for m in claim["messages"]] == ids
    assert all(m["href"].endswith(f"?claim_id={claim_id}") for m in claim["messages"])


def test_renew_claim(http: httpx.Client) -> None:
    post_messages(http, "q", "a")
    location = http.post("/v2/queues/q/claims", json={"ttl": 60}).headers["location"]
    resp = http.patch(location, json={"ttl": 600, "grace": 120})
    assert resp.status_code == 204
    assert http.get(location).json()["ttl"] == 600
    # Only the ttl.
    assert http.patch(location, json={"ttl": 900}).status_code == 204
    assert http.get(location).json()["ttl"] == 900


def test_release_claim(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", "a")
    location = http.post("/v2/queues/q/claims", json={}).headers["location"]
    assert list_all(peer, "q") == []
    assert http.delete(location).status_code == 204
    assert_error(http.get(location), 404, "Not found")
    assert_error(http.patch(location, json={"ttl": 100}), 404, "Not found")
    assert http.delete(location).status_code == 204
    # The message is free again.
    listed = list_all(peer, "q")
    assert [m["id"] for m in listed] == ids
    assert "?claim_id=" not in listed[0]["href"]
    assert http.post("/v2/queues/q/claims", json={}).status_code == 201


def test_claim_belongs_to_its_queue(http: httpx.Client) -> None:
    post_messages(http, "a", 1)
    http.put("/v2/queues/b")
    claim_id = http.post("/v2/queues/a/claims", json={}).headers["location"].rsplit("/", 1)[1]
    assert_error(http.get(f"/v2/queues/b/claims/{claim_id}"), 404, "Not found")
    assert_error(http.patch(f"/v2/queues/b/claims/{claim_id}", json={"ttl": 100}), 404,
                 "Not found")
    assert http.delete(f"/v2/queues/b/claims/{claim_id}").status_code == 204
    assert http.get(f"/v2/queues/a/claims/{claim_id}").status_code == 200


def test_claimed_stats(http: httpx.Client) -> None:
    post_messages(http, "q", 1, 2)
    http.post("/v2/queues/q/claims", params={"limit": 1}, json={})
    stats = http.get("/v2/queues/q/stats").json()["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 1, 2)


def test_dead_letter_queue(http: httpx.Client, peer: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"_max_claim_count": 1, "_dead_letter_queue": "dlq",
                                   "_dead_letter_queue_messages_ttl": 7200})
    post_messages(http, "q", {"job": 1})
    first = http.post("/v2/queues/q/claims", json={"ttl": 60, "grace": 60})
    assert first.status_code == 201
    assert set(first.json()["messages"][0]) == {"id", "href", "ttl", "age", "body"}
    assert http.delete(first.headers["location"]).status_code == 204
    # Claimed once already: the message goes to the dead letter queue.
    assert http.post("/v2/queues/q/claims", json={"ttl": 60, "grace": 60}).status_code == 204
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 0
    assert list_all(peer, "q", include_claimed="true") == []
    # In the DLQ it is counted, listable and claimable.
    assert http.get("/v2/queues/dlq/stats").json()["messages"]["total"] == 1
    listed = list_all(peer, "dlq")
    assert [m["body"] for m in listed] == [{"job": 1}]
    assert 7000 <= listed[0]["ttl"] <= 7200
    again = http.post("/v2/queues/dlq/claims", json={"ttl": 60, "grace": 60})
    assert again.status_code == 201
    assert [m["body"] for m in again.json()["messages"]] == [{"job": 1}]
    names = [q["name"] for q in http.get("/v2/queues").json()["queues"]]
    assert names == ["dlq", "q"]

