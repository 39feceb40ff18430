"""Topics (/v2/topics/...): Zaqar's pub/sub entity, end to end.

A topic is a queue of a shadow project: it shares nothing with the queues
of the same name, and every href says /v2/topics.
"""

from __future__ import annotations

import httpx
import pytest

from tests.http.util import JSON_PATCH, assert_error

T = "/v2/topics/news"


def test_create_get_list_delete(http: httpx.Client) -> None:
    resp = http.put(T, json={"color": "red"})
    assert resp.status_code == 201 and resp.headers["location"] == T
    assert http.put(T, json={}).status_code == 204
    got = http.get(T)
    assert got.status_code == 200
    assert got.json()["color"] == "red" and got.json()["_default_message_ttl"] == 3600
    listing = http.get("/v2/topics", params={"detailed": "true", "with_count": "true"}).json()
    assert listing["topics"] == [{"name": "news", "href": T, "metadata": {"color": "red"}}]
    assert listing["count"] == 1
    assert listing["links"][0]["href"] == "/v2/topics?detailed=true&marker=news&with_count=true"
    page2 = http.get(listing["links"][0]["href"]).json()
    assert page2 == {"topics": [], "links": [], "count": 1}
    # Topics are not queues, and queues are not topics.
    assert http.get("/v2/queues").json()["queues"] == []
    http.put("/v2/queues/news")
    assert [t["name"] for t in http.get("/v2/topics").json()["topics"]] == ["news"]
    assert http.delete(T).status_code == 204
    assert http.delete(T).status_code == 204
    assert http.get("/v2/topics").json()["topics"] == []
    assert [q["name"] for q in http.get("/v2/queues").json()["queues"]] == ["news"]


def test_patch(http: httpx.Client) -> None:
    http.put(T, json={"a": 1})
    resp = http.patch(T, json=[{"op": "add", "path": "/metadata/b", "value": 2},
                               {"op": "remove", "path": "/metadata/a"}],
                      headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 200, resp.text
    assert resp.json()["b"] == 2 and "a" not in resp.json()
    assert_error(http.patch(T, json=[], headers={"Content-Type": "application/json"}), 415)
    assert_error(http.patch(T, json=[{"op": "replace", "path": "/metadata/zz", "value": 1}],
                            headers={"Content-Type": JSON_PATCH}), 409)


def test_messages_stats_and_purge(http: httpx.Client, peer: httpx.Client) -> None:
    resp = http.post(f"{T}/messages", json={"messages": [{"body": {"n": i}} for i in range(3)]})
    assert resp.status_code == 201, resp.text
    hrefs = resp.json()["resources"]
    assert all(h.startswith(f"{T}/messages/") for h in hrefs)
    listing = peer.get(f"{T}/messages").json()
    assert [m["body"] for m in listing["messages"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(m["href"].startswith(f"{T}/messages/") for m in listing["messages"])
    assert listing["links"][0]["href"].startswith(f"{T}/messages?")
    # Own messages need echo, as on queues.
    assert http.get(f"{T}/messages").json()["messages"] == []
    first_id = hrefs[0].rsplit("/", 1)[1]
    one = http.get(hrefs[0])
    assert one.status_code == 200 and one.json()["body"] == {"n": 0}
    assert one.json()["href"] == hrefs[0]
    many = http.get(f"{T}/messages", params={"ids": first_id}).json()
    assert [m["id"] for m in many["messages"]] == [first_id]
    stats = http.get(f"{T}/stats").json()["messages"]
    assert stats["total"] == 3 and stats["free"] == 3
    assert stats["oldest"]["href"] == hrefs[0]
    # The queue of the same name has nothing.
    assert http.get("/v2/queues/news/stats").json()["messages"]["total"] == 0
    assert_error(http.get(f"/v2/queues/news/messages/{first_id}"), 404)
    assert http.delete(hrefs[0]).status_code == 204
    assert_error(http.get(hrefs[0]), 404)
    popped = http.delete(f"{T}/messages", params={"pop": 1})
    assert popped.status_code == 200 and len(popped.json()["messages"]) == 1
    assert http.post(f"{T}/purge", json={"resource_types": ["messages"]}).status_code == 204
    assert http.get(f"{T}/stats").json()["messages"]["total"] == 0


def test_bad_input(http: httpx.Client) -> None:
    assert_error(http.put("/v2/topics/bad%20name"), 400, "Invalid topic identification")
    assert_error(http.get("/v2/topics/" + "x" * 65), 400, "Invalid topic identification")
    assert_error(http.post(f"{T}/messages", json={"messages": []}), 400)
    assert_error(http.post(f"{T}/messages", json={"messages": [{"body": 1, "ttl": 1}]}), 400)
    assert_error(http.get("/v2/topics", params={"limit": 0}), 400)
    assert_error(http.post(f"{T}/purge", json={"resource_types": ["nope"]}), 400)
    assert_error(http.get(f"{T}/messages", params={"wait": 99}), 400)
    # Topics have no claims.
    assert http.post(f"{T}/claims").status_code in (404, 405)


def test_topic_subscriptions(nhttp: httpx.Client) -> None:
    subs = f"{T}/subscriptions"
    resp = nhttp.post(subs, json={"subscriber": "http://127.0.0.1:9/t", "ttl": 600})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == subs
    sid = resp.json()["subscription_id"]
    body = nhttp.get(f"{subs}/{sid}").json()
    assert body["source"] == "news" and body["subscriber"] == "http://127.0.0.1:9/t"
    listing = nhttp.get(subs).json()
    assert [s["id"] for s in listing["subscriptions"]] == [sid]
    assert listing["links"][0]["href"].startswith(subs + "?")
    # Not a subscription of the queue of the same name.
    assert nhttp.get("/v2/queues/news/subscriptions").json()["subscriptions"] == []
    assert_error(nhttp.get(f"/v2/queues/news/subscriptions/{sid}"), 404)
    # A duplicate subscriber answers with the same id, as on queues (and in Zaqar).
    again = nhttp.post(subs, json={"subscriber": "http://127.0.0.1:9/t"})
    assert again.status_code == 201 and again.json() == {"subscription_id": sid}
    assert_error(nhttp.post(subs, json={"subscriber": "ftp://127.0.0.1/"}), 400)
    assert nhttp.patch(f"{subs}/{sid}", json={"ttl": 1200}).status_code == 204
    assert nhttp.get(f"{subs}/{sid}").json()["ttl"] == 1200
    # A post to the topic owes the subscriber a delivery.
    nhttp.post(f"{T}/messages", json={"messages": [{"body": "hello"}]})
    pending = nhttp.get(f"{subs}/{sid}/deliveries", params={"status": "pending"}).json()
    assert [d["payload"]["body"] for d in pending["deliveries"]] == ["hello"]
    assert nhttp.delete(f"{subs}/{sid}").status_code == 204
    assert nhttp.get(subs).json()["subscriptions"] == []


def test_topic_confirmation_url_says_topics(nhttp: httpx.Client, project: str) -> None:
    subs = f"{T}/subscriptions"
    sid = nhttp.post(subs, json={"subscriber": "mailto:a@example.com",
                                 "options": {"require_confirmation": True}}).json()[
        "subscription_id"]
    (delivery,) = nhttp.get(f"{subs}/{sid}/deliveries", params={"status": "pending"}).json()[
        "deliveries"]
    payload = delivery["payload"]
    assert payload["URL-Paths"] == f"{subs}/{sid}/confirm"
    assert payload["X-Project-ID"] == project  # the real project, not the shadow one
    headers = {k: payload[k] for k in ("URL-Signature", "URL-Expires", "URL-Methods",
                                       "URL-Paths", "X-Project-ID")}
    headers["Client-ID"] = nhttp.headers["Client-ID"]
    resp = httpx.put(payload["WSGISubscribeURL"], headers=headers, json={"confirmed": True})
    assert resp.status_code == 204, resp.text
    assert nhttp.get(f"{subs}/{sid}").json()["confirmed"] is True


def test_deleting_a_topic_deletes_its_subscriptions(nhttp: httpx.Client) -> None:
    nhttp.post(f"{T}/subscriptions", json={"subscriber": "mailto:a@example.com"})
    assert nhttp.delete(T).status_code == 204
    assert nhttp.get(f"{T}/subscriptions").json()["subscriptions"] == []


@pytest.mark.usefixtures("notify_log_clean")
def test_encrypted_topic(nhttp: httpx.Client, peer: httpx.Client) -> None:
    assert nhttp.put(T, json={"_enable_encrypt_messages": True}).status_code == 201
    nhttp.post(f"{T}/messages", json={"messages": [{"body": {"secret": 1}}]})
    listing = nhttp.get(f"{T}/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listing["messages"]] == [{"secret": 1}]
