"""Messages: post, list, get, bulk get, delete, bulk delete and pop."""

from __future__ import annotations

import httpx
import pytest

from tests.http.util import assert_error, list_all, post_messages


def claim(http: httpx.Client, queue: str, limit: int = 10) -> tuple[str, list[dict]]:
    resp = http.post(f"/v2/queues/{queue}/claims", params={"limit": limit},
                     json={"ttl": 300, "grace": 60})
    assert resp.status_code == 201, resp.text
    return resp.headers["location"].rsplit("/", 1)[1], resp.json()["messages"]


# --- post ------------------------------------------------------------------


def test_post_returns_resources(http: httpx.Client) -> None:
    resp = http.post("/v2/queues/q/messages", json={"messages": [
        {"body": {"event": "start"}, "ttl": 300},
        {"body": "text"},
    ]})
    assert resp.status_code == 201
    resources = resp.json()["resources"]
    assert list(resp.json()) == ["resources"]
    assert len(resources) == 2
    assert all(href.startswith("/v2/queues/q/messages/") for href in resources)
    assert len(set(resources)) == 2


def test_post_location_names_every_new_id(http: httpx.Client) -> None:
    """Zaqar's Location on a post, every new id in order: tempest reads them there."""
    resp = http.post("/v2/queues/q/messages", json={"messages": [
        {"body": 1}, {"body": 2}, {"body": 3}]})
    assert resp.status_code == 201
    ids = [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]
    assert resp.headers["location"] == "/v2/queues/q/messages?ids=" + ",".join(ids)
    got = http.get(resp.headers["location"])
    assert [m["id"] for m in got.json()["messages"]] == ids


def test_post_creates_the_queue(http: httpx.Client) -> None:
    post_messages(http, "lazy", 1)
    assert [q["name"] for q in http.get("/v2/queues").json()["queues"]] == ["lazy"]


def test_post_more_than_twenty_messages(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", *range(21))
    assert len(ids) == 21
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 21
    # A page still stops at 20.
    assert len(list_all(peer, "q", limit=20)) == 20


def test_post_bodies_of_every_json_type(http: httpx.Client, peer: httpx.Client) -> None:
    bodies = [None, 0, 1.5, "s", True, [1, "two"], {"k": {"n": [None]}}]
    ids = post_messages(http, "q", *bodies)
    got = {m["id"]: m["body"] for m in list_all(peer, "q", limit=20)}
    assert [got[i] for i in ids] == bodies


def test_post_ttl_default_from_queue(http: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"_default_message_ttl": 120})
    ids = post_messages(http, "q", "x")
    assert http.get(f"/v2/queues/q/messages/{ids[0]}").json()["ttl"] == 120
    ids = post_messages(http, "q", "y", ttl=600)
    assert http.get(f"/v2/queues/q/messages/{ids[0]}").json()["ttl"] == 600


# --- get by id -------------------------------------------------------------


def test_get_message_by_id(http: httpx.Client) -> None:
    [message_id] = post_messages(http, "q", {"a": 1}, ttl=300)
    resp = http.get(f"/v2/queues/q/messages/{message_id}")
    assert resp.status_code == 200
    message = resp.json()
    assert message["id"] == message_id
    assert message["href"] == f"/v2/queues/q/messages/{message_id}"
    assert message["body"] == {"a": 1}
    assert message["ttl"] == 300
    assert isinstance(message["age"], int) and message["age"] >= 0


def test_get_unknown_message(http: httpx.Client) -> None:
    post_messages(http, "q", 1)
    for message_id in ("ffffffff", "not-an-id", "0"):
        assert_error(http.get(f"/v2/queues/q/messages/{message_id}"), 404, "Not found")


def test_message_belongs_to_its_queue(http: httpx.Client) -> None:
    [message_id] = post_messages(http, "a", "in a")
    post_messages(http, "b", "in b")
    assert_error(http.get(f"/v2/queues/b/messages/{message_id}"), 404, "Not found")
    assert_error(http.get("/v2/queues/b/messages", params={"ids": message_id}), 404,
                 "Not found")
    # Deleting it through b does nothing.
    assert http.delete(f"/v2/queues/b/messages/{message_id}").status_code == 204
    assert http.get(f"/v2/queues/a/messages/{message_id}").status_code == 200


def test_message_belongs_to_its_project(http: httpx.Client, server_url: str,
                                        headers: dict[str, str]) -> None:
    [message_id] = post_messages(http, "q", "secret")
    other = {**headers, "X-Project-ID": headers["X-Project-ID"] + "-x"}
    resp = httpx.get(f"{server_url}/v2/queues/q/messages/{message_id}", headers=other)
    assert_error(resp, 404, "Not found")


# --- bulk get --------------------------------------------------------------


def test_bulk_get(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b", "c")
    resp = http.get("/v2/queues/q/messages", params={"ids": f"{ids[0]},{ids[2]}"})
    assert resp.status_code == 200
    assert [m["body"] for m in resp.json()["messages"]] == ["a", "c"]


def test_bulk_get_skips_unknown_ids(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    resp = http.get("/v2/queues/q/messages", params={"ids": f"ffffff,{ids[1]},junk"})
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["messages"]] == [ids[1]]


def test_bulk_get_none_found(http: httpx.Client) -> None:
    post_messages(http, "q", "a")
    assert_error(http.get("/v2/queues/q/messages", params={"ids": "ffffff,eeeeee"}), 404,
                 "Not found")


def test_bulk_get_twenty_ids(http: httpx.Client) -> None:
    ids = post_messages(http, "q", *range(20))
    resp = http.get("/v2/queues/q/messages", params={"ids": ",".join(ids)})
    assert resp.status_code == 200
    assert len(resp.json()["messages"]) == 20


# --- listing ---------------------------------------------------------------


def test_listing_shape(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    body = peer.get("/v2/queues/q/messages").json()
    assert [m["id"] for m in body["messages"]] == ids
    message = body["messages"][0]
    assert message["href"] == f"/v2/queues/q/messages/{ids[0]}"
    # Zaqar's fields exactly: no claim_count, no claim_id (it is in the href).
    assert set(message) == {"id", "href", "ttl", "age", "body"}
    assert set(peer.get(message["href"]).json()) == {"id", "href", "ttl", "age", "body"}
    got = peer.get("/v2/queues/q/messages", params={"ids": ids[0]}).json()["messages"]
    assert set(got[0]) == {"id", "href", "ttl", "age", "body"}
    [link] = body["links"]
    assert link == {"rel": "next", "href": f"/v2/queues/q/messages?marker={ids[-1]}"}


def test_listing_echo(http: httpx.Client, peer: httpx.Client) -> None:
    post_messages(http, "q", "mine")
    assert list_all(http, "q") == []
    assert list_all(http, "q", echo="false") == []
    assert [m["body"] for m in list_all(http, "q", echo="true")] == ["mine"]
    assert [m["body"] for m in list_all(peer, "q")] == ["mine"]


def test_listing_paging_with_marker(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", *range(7))
    seen: list[str] = []
    url = "/v2/queues/q/messages?limit=3"
    for _ in range(10):
        body = peer.get(url).json()
        if not body["messages"]:
            assert body["links"] == []
            break
        assert len(body["messages"]) <= 3
        seen += [m["id"] for m in body["messages"]]
        url = [link["href"] for link in body["links"] if link["rel"] == "next"][0]
    assert seen == ids
    # The marker is exclusive.
    assert [m["id"] for m in list_all(peer, "q", marker=ids[2], limit=2)] == ids[3:5]


def test_listing_next_link_keeps_flags(http: httpx.Client) -> None:
    """As Zaqar writes them: the request's own parameters, in name order,
    then the marker; limit only when given."""
    [mid] = post_messages(http, "q", 1)
    body = http.get("/v2/queues/q/messages",
                    params={"echo": "true", "include_claimed": "true", "limit": 5}).json()
    assert body["links"][0]["href"] == (
        f"/v2/queues/q/messages?echo=true&include_claimed=true&limit=5&marker={mid}")
    body = http.get("/v2/queues/q/messages", params={"echo": "true", "marker": "0"}).json()
    assert body["links"][0]["href"] == f"/v2/queues/q/messages?echo=true&marker={mid}"
    body = http.get("/v2/queues/q/messages", params={"echo": "false"}).json()
    assert body["links"] == []


def test_listing_next_link_adds_no_include_delayed(http: httpx.Client, peer: httpx.Client
                                                  ) -> None:
    """A deliberate difference (docs/compatibility.md): Zaqar's next link adds
    include_delayed=true, harmless there since Zaqar ignores a message's own
    delay; Tidings honours it, so the next page would show delayed messages."""
    ids = post_messages(http, "q", 1, 2)
    delayed = post_messages(http, "q", 3, delay=600)
    body = peer.get("/v2/queues/q/messages", params={"limit": 1}).json()
    href = body["links"][0]["href"]
    assert href == f"/v2/queues/q/messages?limit=1&marker={ids[0]}"
    rest = peer.get(href).json()["messages"]
    assert [m["id"] for m in rest] == ids[1:]  # not the delayed one
    assert delayed[0] not in [m["id"] for m in peer.get(
        peer.get(href).json()["links"][0]["href"]).json()["messages"]]


def test_listing_default_limit_is_ten(http: httpx.Client, peer: httpx.Client) -> None:
    post_messages(http, "q", *range(12))
    assert len(list_all(peer, "q")) == 10


def test_listing_include_claimed(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b", "c")
    claim_id, _ = claim(peer, "q", limit=1)
    assert [m["id"] for m in list_all(peer, "q")] == ids[1:]
    listed = list_all(peer, "q", include_claimed="true")
    assert [m["id"] for m in listed] == ids
    assert "claim_id" not in listed[0]  # as in Zaqar: in the href only
    assert listed[0]["href"].endswith(f"?claim_id={claim_id}")


def test_default_message_delay(http: httpx.Client, peer: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"_default_message_delay": 600})
    [message_id] = post_messages(http, "q", "later")
    assert list_all(peer, "q") == []
    assert [m["id"] for m in list_all(peer, "q", include_delayed="true")] == [message_id]
    # A delayed message cannot be claimed yet.
    assert peer.post("/v2/queues/q/claims", json={}).status_code == 204


def test_per_message_delay(http: httpx.Client, peer: httpx.Client) -> None:
    ids = post_messages(http, "q", "now")
    delayed = post_messages(http, "q", "later", delay=120)
    assert [m["id"] for m in list_all(peer, "q")] == ids
    assert [m["id"] for m in list_all(peer, "q", include_delayed="true")] == ids + delayed
    _, claimed = claim(peer, "q")
    assert [m["id"] for m in claimed] == ids


def test_per_message_delay_zero_overrides_queue_delay(http: httpx.Client,
                                                      peer: httpx.Client) -> None:
    http.put("/v2/queues/q", json={"_default_message_delay": 600})
    ids = post_messages(http, "q", "now", delay=0)
    assert [m["id"] for m in list_all(peer, "q")] == ids


def test_listing_of_missing_queue(http: httpx.Client) -> None:
    body = http.get("/v2/queues/ghost/messages").json()
    assert body == {"messages": [], "links": []}


# --- delete ----------------------------------------------------------------


def test_delete_by_id_is_idempotent(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    assert http.delete(f"/v2/queues/q/messages/{ids[0]}").status_code == 204
    assert_error(http.get(f"/v2/queues/q/messages/{ids[0]}"), 404, "Not found")
    assert http.delete(f"/v2/queues/q/messages/{ids[0]}").status_code == 204
    assert http.delete("/v2/queues/q/messages/ffffffff").status_code == 204
    assert http.delete("/v2/queues/ghost/messages/ffffffff").status_code == 204
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 1


def test_delete_claimed_message(http: httpx.Client) -> None:
    [message_id] = post_messages(http, "q", "a")
    claim_id, _ = claim(http, "q")
    path = f"/v2/queues/q/messages/{message_id}"
    assert_error(http.delete(path), 403, "Unable to delete")
    assert_error(http.delete(path, params={"claim_id": "0123456789abcdef01234567"}), 400,
                 "Unable to delete")
    assert http.get(path).status_code == 200
    assert http.delete(path, params={"claim_id": claim_id}).status_code == 204
    assert_error(http.get(path), 404, "Not found")


def test_delete_with_claim_id_on_unclaimed_message(http: httpx.Client) -> None:
    [message_id] = post_messages(http, "q", "a")
    resp = http.delete(f"/v2/queues/q/messages/{message_id}",
                       params={"claim_id": "0123456789abcdef01234567"})
    assert_error(resp, 400)
    assert http.get(f"/v2/queues/q/messages/{message_id}").status_code == 200


def test_delete_after_claim_released(http: httpx.Client) -> None:
    [message_id] = post_messages(http, "q", "a")
    claim_id, _ = claim(http, "q")
    assert http.delete(f"/v2/queues/q/claims/{claim_id}").status_code == 204
    assert http.delete(f"/v2/queues/q/messages/{message_id}").status_code == 204


def test_bulk_delete_by_ids(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b", "c")
    resp = http.delete("/v2/queues/q/messages", params={"ids": f"{ids[0]},{ids[2]},ffffff"})
    assert resp.status_code == 204
    assert [m["id"] for m in list_all(http, "q", echo="true")] == [ids[1]]
    # Again: nothing left to delete, still fine.
    assert http.delete("/v2/queues/q/messages",
                       params={"ids": f"{ids[0]},{ids[2]}"}).status_code == 204


def test_bulk_delete_claimed_with_claim_ids(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    claim_id, _ = claim(http, "q", limit=1)
    resp = http.delete("/v2/queues/q/messages",
                       params={"ids": ",".join(ids), "claim_ids": claim_id})
    assert resp.status_code == 204
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == 0


@pytest.mark.parametrize("count", [1, 3, 20])
def test_pop(http: httpx.Client, count: int) -> None:
    ids = post_messages(http, "q", *range(5))
    resp = http.delete("/v2/queues/q/messages", params={"pop": count})
    assert resp.status_code == 200
    popped = resp.json()["messages"]
    assert [m["id"] for m in popped] == ids[:count]
    assert [m["body"] for m in popped] == list(range(5))[:count]
    # As Zaqar's: with claim_count and the id of the claim that took them.
    assert all(m["claim_count"] == 0 for m in popped)
    assert len({m["claim_id"] for m in popped}) == 1 and popped[0]["claim_id"]
    assert http.get("/v2/queues/q/stats").json()["messages"]["total"] == max(0, 5 - count)


def test_pop_skips_claimed_and_empty_queue(http: httpx.Client) -> None:
    ids = post_messages(http, "q", "a", "b")
    claim(http, "q", limit=1)
    popped = http.delete("/v2/queues/q/messages", params={"pop": 5}).json()["messages"]
    assert [m["id"] for m in popped] == ids[1:]
    resp = http.delete("/v2/queues/q/messages", params={"pop": 5})
    assert resp.status_code == 200
    assert resp.json() == {"messages": []}
    resp = http.delete("/v2/queues/ghost/messages", params={"pop": 1})
    assert resp.status_code == 200
    assert resp.json() == {"messages": []}


@pytest.mark.parametrize("marker", ["zzzz", "-1", "8000000000000000", "ffffffffffffffff",
                                    "x" * 5000, "0x10"])
def test_listing_odd_markers(http: httpx.Client, peer: httpx.Client, marker: str) -> None:
    post_messages(http, "q", 1)
    resp = peer.get("/v2/queues/q/messages", params={"marker": marker})
    assert resp.status_code == 200, resp.text


def test_post_with_charset_and_without_content_type(http: httpx.Client) -> None:
    body = b'{"messages": [{"body": "caf\xc3\xa9"}]}'
    resp = http.post("/v2/queues/q/messages", content=body,
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 201
    assert http.post("/v2/queues/q/messages", content=body).status_code == 201
    assert [m["body"] for m in list_all(http, "q", echo="true")] == ["café", "café"]
