"""Subscriptions over HTTP: Zaqar's v2 wire format, its bugs fixed, the
webhook address check, the confirmation flow and the deliveries listing.

Most tests run against the notify server (webhooks to 127.0.0.1 allowed,
a known confirmation secret, no delivery worker: deliveries stay put).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from zaqarclient.queues.v2.client import Client

from tests.http.util import assert_error
from tests.support.notify_server import SIGNING_SECRET, NotifyServer

pytestmark = pytest.mark.usefixtures("notify_log_clean")

HOOK = "http://127.0.0.1:9/hook"
SUBS = "/v2/queues/q/subscriptions"


def subscribe(http: httpx.Client, subscriber: str = HOOK, queue: str = "q",
              **fields: Any) -> str:
    resp = http.post(f"/v2/queues/{queue}/subscriptions",
                     json={"subscriber": subscriber, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()["subscription_id"]


# --- create, get, list, update, delete --------------------------------------------


def test_create_and_get(nhttp: httpx.Client) -> None:
    resp = nhttp.post(SUBS, json={"subscriber": HOOK, "ttl": 3600, "options": {"a": 1}})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == SUBS
    sid = resp.json()["subscription_id"]
    assert isinstance(sid, str) and sid
    got = nhttp.get(f"{SUBS}/{sid}")
    assert got.status_code == 200
    body = got.json()
    assert body == {"id": sid, "subscriber": HOOK, "source": "q", "ttl": 3600,
                    "age": body["age"], "options": {"a": 1}, "confirmed": True}
    assert isinstance(body["age"], int) and body["age"] >= 0


def test_defaults_ttl_and_options(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp, "mailto:someone@example.com")
    body = nhttp.get(f"{SUBS}/{sid}").json()
    assert body["ttl"] == 3600 and body["options"] == {} and body["confirmed"] is True


def test_list_pages_with_next_links(nhttp: httpx.Client) -> None:
    ids = [subscribe(nhttp, f"http://127.0.0.1:9/h{i}") for i in range(3)]
    first = nhttp.get(SUBS, params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [s["id"] for s in page["subscriptions"]] == ids[:2]
    assert page["subscriptions"][0]["source"] == "q"
    (link,) = page["links"]
    assert link == {"rel": "next", "href": f"{SUBS}?limit=2&marker={ids[1]}"}
    second = nhttp.get(link["href"]).json()
    assert [s["id"] for s in second["subscriptions"]] == ids[2:]
    third = nhttp.get(second["links"][0]["href"]).json()
    assert third == {"subscriptions": [], "links": []}


def test_list_of_an_unknown_queue_is_empty(nhttp: httpx.Client) -> None:
    resp = nhttp.get("/v2/queues/nothing/subscriptions")
    assert resp.status_code == 200
    assert resp.json() == {"subscriptions": [], "links": []}


def test_update(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp, ttl=600)
    resp = nhttp.patch(f"{SUBS}/{sid}", json={"ttl": 7200, "options": {"x": "y"},
                                               "subscriber": "http://127.0.0.1:9/other"})
    assert resp.status_code == 204, resp.text
    assert resp.headers["location"] == f"{SUBS}/{sid}"  # as Zaqar
    body = nhttp.get(f"{SUBS}/{sid}").json()
    assert (body["ttl"], body["options"], body["subscriber"]) == (
        7200, {"x": "y"}, "http://127.0.0.1:9/other")


def test_update_leaves_null_fields_as_they_are(nhttp: httpx.Client) -> None:
    # As in Zaqar; ``openstack messaging subscription update`` sends them.
    sid = subscribe(nhttp, ttl=600, options={"a": 1})
    resp = nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": None, "ttl": 7200, "options": None})
    assert resp.status_code == 204, resp.text
    body = nhttp.get(f"{SUBS}/{sid}").json()
    assert (body["subscriber"], body["ttl"], body["options"]) == (HOOK, 7200, {"a": 1})
    assert nhttp.patch(f"{SUBS}/{sid}", json={"ttl": None}).status_code == 204
    assert nhttp.get(f"{SUBS}/{sid}").json()["ttl"] == 7200


def test_update_errors(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp)
    subscribe(nhttp, "mailto:taken@example.com")
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", content=b""), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json=[1]), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"nope": 1}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"ttl": "long"}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"options": []}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": "ftp://h/x"}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": "http://10.0.0.1/"}), 400)
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": "mailto:taken@example.com"}),
                 409, "Resource conflict")
    assert_error(nhttp.patch(f"{SUBS}/unknown", json={"ttl": 600}), 404)
    # Nothing changed.
    assert nhttp.get(f"{SUBS}/{sid}").json()["subscriber"] == HOOK


def test_delete_is_idempotent(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp)
    assert nhttp.delete(f"{SUBS}/{sid}").status_code == 204
    assert nhttp.delete(f"{SUBS}/{sid}").status_code == 204
    assert_error(nhttp.get(f"{SUBS}/{sid}"), 404, "Not found")
    assert nhttp.get(SUBS).json()["subscriptions"] == []
    # The subscriber is free again.
    subscribe(nhttp)


def test_projects_and_queues_are_apart(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp)
    assert_error(nhttp.get(f"/v2/queues/other/subscriptions/{sid}"), 404)
    other = {"X-Project-ID": "other-" + uuid.uuid4().hex, "Client-ID": str(uuid.uuid4())}
    assert_error(nhttp.get(f"{SUBS}/{sid}", headers=other), 404)
    assert nhttp.get(SUBS, headers=other).json()["subscriptions"] == []
    # The same subscriber may subscribe to another queue.
    subscribe(nhttp, queue="q2")


def test_purge_subscriptions(nhttp: httpx.Client) -> None:
    subscribe(nhttp)
    subscribe(nhttp, "mailto:a@example.com")
    resp = nhttp.post("/v2/queues/q/purge", json={"resource_types": ["subscriptions"]})
    assert resp.status_code == 204
    assert nhttp.get(SUBS).json()["subscriptions"] == []


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("document,title", [
    ({"subscriber": "ftp://127.0.0.1/x"}, "Invalid API request"),
    ({"subscriber": "gopher:x"}, "Invalid API request"),
    ({"subscriber": "websocket:abc"}, "Invalid API request"),
    ({"subscriber": 42}, "Invalid request body"),
    ({"subscriber": None}, "Invalid API request"),
    ({"subscriber": ["http://127.0.0.1/"]}, "Invalid request body"),
    ({}, "Invalid API request"),
    ({"subscriber": "mailto:"}, "Invalid API request"),
    ({"subscriber": "http:///nohost"}, "Invalid API request"),
    ({"subscriber": HOOK, "options": []}, "Invalid request body"),
    ({"subscriber": HOOK, "options": "x"}, "Invalid request body"),
    ({"subscriber": HOOK, "ttl": "3600"}, "Invalid request body"),
    ({"subscriber": HOOK, "ttl": 1.5}, "Invalid request body"),
    ({"subscriber": HOOK, "ttl": True}, "Invalid request body"),
    ({"subscriber": HOOK, "ttl": 59}, "Invalid API request"),
    ({"subscriber": HOOK, "ttl": 2**31}, "Invalid API request"),
    ({"subscriber": HOOK, "options": {"_retry_policy": []}}, "Invalid request body"),
    ({"subscriber": HOOK, "options": {"_retry_policy": {"minimum_delay": "1"}}},
     "Invalid request body"),
    ({"subscriber": HOOK, "options": {"_retry_policy": {"retry_backoff_function": "x"}}},
     "Invalid API request"),
    ({"subscriber": HOOK, "options": {"require_confirmation": "yes"}}, "Invalid request body"),
])
def test_bad_subscriptions(nhttp: httpx.Client, document: dict, title: str) -> None:
    assert_error(nhttp.post(SUBS, json=document), 400, title)
    assert nhttp.get(SUBS).json()["subscriptions"] == []


@pytest.mark.parametrize("body", [b"", b"[]", b"42", b"{nope"])
def test_bad_bodies(nhttp: httpx.Client, body: bytes) -> None:
    resp = nhttp.post(SUBS, content=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 400)


def test_bad_queue_name_and_limits(nhttp: httpx.Client) -> None:
    assert_error(nhttp.post("/v2/queues/bad%20name/subscriptions", json={"subscriber": HOOK}),
                 400, "Invalid queue identification")
    for limit in ("0", "21", "-1"):
        assert_error(nhttp.get(SUBS, params={"limit": limit}), 400, "Invalid API request")
    assert_error(nhttp.get(SUBS, params={"limit": "x"}), 400, "Invalid parameter")


def test_duplicate_subscriber_answers_with_the_same_id(nhttp: httpx.Client) -> None:
    """As in Zaqar (tempest's test_create_subscriptions_with_duplicate_subscriber):
    201 with the first subscription's id; its ttl and options stay as they were."""
    sid = subscribe(nhttp, ttl=600, options={"a": 1})
    again = nhttp.post(SUBS, json={"subscriber": HOOK, "ttl": 7200, "options": {"b": 2}})
    assert again.status_code == 201, again.text
    assert again.headers["location"] == SUBS
    assert again.json() == {"subscription_id": sid}
    body = nhttp.get(f"{SUBS}/{sid}").json()
    assert (body["ttl"], body["options"]) == (600, {"a": 1})
    # Unconfirmed, it is asked to confirm again (Zaqar re-sends the request)...
    mail = subscribe(nhttp, "mailto:x@example.com", options={"require_confirmation": True})
    assert subscribe(nhttp, "mailto:x@example.com") == mail
    assert [d["kind"] for d in deliveries(nhttp, mail)] == ["confirmation", "confirmation"]
    # ...and once it confirmed, a second create is Zaqar's 409.
    assert nhttp.put(f"{SUBS}/{mail}/confirm", json={"confirmed": True}).status_code == 204
    assert_error(nhttp.post(SUBS, json={"subscriber": "mailto:x@example.com"}), 409,
                 "Resource conflict")
    assert len(nhttp.get(SUBS).json()["subscriptions"]) == 2


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "https://192.168.1.10:8443/x",
    "http://172.16.0.1/",
    "http://127.0.0.2/",  # only 127.0.0.1/32 is allowed on this server
    "http://[::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/",
    "http://2130706434/",  # 127.0.0.2 as the resolver reads it...
    "http://0xa9fea9fe/",  # ...and 169.254.169.254
    "http://168.63.129.16/",  # cloud platform services
    "http://100.100.100.200/",
    "http://192.0.0.192/",
])
def test_internal_targets_are_refused(nhttp: httpx.Client, target: str) -> None:
    """What the URL spells itself (an IP address in any notation) is judged
    at creation; host names at delivery (tests/notify)."""
    body = assert_error(nhttp.post(SUBS, json={"subscriber": target}), 400,
                        "Invalid API request")
    assert "not allowed" in body["description"]
    assert_error(nhttp.post(SUBS, json={"subscriber": target}), 400)
    sid = subscribe(nhttp, "mailto:a@example.com")
    assert_error(nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": target}), 400)


@pytest.mark.parametrize("target", [
    "http://a@example.com/", "http://h\\@example.com/", "http://user:pw@example.com/",
    "https://:secret@example.com/", "http://@example.com/",
])
def test_webhook_urls_with_user_info_are_refused(nhttp: httpx.Client, target: str) -> None:
    """They could never be delivered (no credentials go in a webhook URL),
    and parsers disagree on where their host is."""
    body = assert_error(nhttp.post(SUBS, json={"subscriber": target}), 400,
                        "Invalid API request")
    assert "user info" in body["description"]
    assert nhttp.get(SUBS).json()["subscriptions"] == []


@pytest.mark.parametrize("target", [
    "http://fake:8080", "http://trigger.me", "http://no-such-host.invalid/x",
])
def test_names_are_accepted_without_resolving_them(nhttp: httpx.Client, target: str) -> None:
    """As in Zaqar (tempest subscribes http://fake:8080, python-zaqarclient's
    tests http://trigger.me): a name is resolved at delivery, not here."""
    sid = subscribe(nhttp, target)
    assert nhttp.get(f"{SUBS}/{sid}").json()["subscriber"] == target


def test_trust_subscribers_need_keystone(http: httpx.Client) -> None:
    """trust+http(s) subscribers (Keystone trusts, tests/auth/test_trusts.py)
    are refused under noauth, with a clear reason."""
    for subscriber in ("trust+http://example.com/v2/queues/q2/messages",
                       "trust+https://example.com/hook"):
        body = assert_error(http.post(SUBS, json={"subscriber": subscriber}), 400,
                            "Invalid API request")
        assert "Keystone" in body["description"]
    # Their target is checked as a webhook's.
    assert "not allowed" in assert_error(http.post(SUBS, json={
        "subscriber": "trust+http://169.254.169.254/"}), 400)["description"]
    assert http.get(SUBS).json()["subscriptions"] == []


def test_loopback_is_refused_by_default(http: httpx.Client) -> None:
    """The session's server has no allowed networks: 127.0.0.1 is refused,
    and so are the localhost names, which always mean loopback."""
    body = assert_error(http.post(SUBS, json={"subscriber": HOOK}), 400)
    assert "127.0.0.1" in body["description"]
    for name in ("http://localhost/", "http://localhost./", "http://LocalHost:8080/",
                 "http://api.localhost/"):
        assert "not allowed" in assert_error(
            http.post(SUBS, json={"subscriber": name}), 400)["description"]
    # mailto: needs no address check.
    assert http.post(SUBS, json={"subscriber": "mailto:a@example.com"}).status_code == 201


def test_project_ids_with_control_characters_are_refused(nhttp: httpx.Client) -> None:
    """Topics live in project + "\x1ftopics": no real project may look so.
    (The HTTP server itself refuses control characters in headers; the
    WebSocket API, whose headers are JSON, gets the operation layer's 400.)"""
    from tidings import errors
    from tidings.api.context import check_project
    from tidings.config import Limits

    with pytest.raises(errors.InvalidQueueName):
        check_project("p\x1ftopics", Limits())
    resp = nhttp.get("/v2/queues", headers={"X-Project-ID": "p\x1ftopics"})
    assert resp.status_code == 400


# --- confirmation ---------------------------------------------------------------------


def deliveries(http: httpx.Client, sid: str, status: str = "pending", queue: str = "q",
               root: str = "/v2/queues") -> list[dict[str, Any]]:
    resp = http.get(f"{root}/{queue}/subscriptions/{sid}/deliveries", params={"status": status})
    assert resp.status_code == 200, resp.text
    return resp.json()["deliveries"]


def signed_headers(payload: dict[str, Any]) -> dict[str, str]:
    headers = {key: payload[key] for key in
               ("URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths", "X-Project-ID")}
    headers["Client-ID"] = str(uuid.uuid4())
    return headers


def test_confirmation_flow(nhttp: httpx.Client, notify_server: NotifyServer,
                           project: str) -> None:
    sid = subscribe(nhttp, options={"require_confirmation": True})
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is False
    (delivery,) = deliveries(nhttp, sid)
    assert delivery["kind"] == "confirmation" and delivery["attempts"] == 0
    assert delivery["status"] == "pending" and delivery["last_error"] is None
    payload = delivery["payload"]
    path = f"{SUBS}/{sid}/confirm"
    assert payload["Message_Type"] == "SubscriptionConfirmation"
    assert payload["queue_name"] == "q" and payload["subscription_id"] == sid
    assert payload["URL-Methods"] == "PUT" and payload["URL-Paths"] == path
    assert payload["X-Project-ID"] == project
    assert payload["WSGISubscribeURL"] == notify_server.url + path
    assert payload["SubscribeBody"] == {"confirmed": True}
    assert "q" in payload["Message"]

    # The subscriber confirms with the signed headers alone (no other credentials).
    resp = httpx.put(payload["WSGISubscribeURL"], headers=signed_headers(payload),
                     json={"confirmed": True})
    assert resp.status_code == 204, resp.text
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is True


def test_confirmation_signature_is_zaqars(nhttp: httpx.Client, project: str) -> None:
    """The URL is signed as Zaqar signs pre-signed URLs, with the configured
    secret: a Zaqar-aware client can check it."""
    import hashlib
    import hmac

    sid = subscribe(nhttp, options={"require_confirmation": True})
    payload = deliveries(nhttp, sid)[0]["payload"]
    message = "%s\\n%s\\n%s\\n%s" % ([payload["URL-Paths"]], "PUT", project,
                                    payload["URL-Expires"])
    expected = hmac.new(SIGNING_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert payload["URL-Signature"] == expected


def test_bad_signatures_are_refused(nhttp: httpx.Client, notify_server: NotifyServer) -> None:
    sid = subscribe(nhttp, options={"require_confirmation": True})
    payload = deliveries(nhttp, sid)[0]["payload"]
    url = payload["WSGISubscribeURL"]
    forged = signed_headers(payload)
    forged["URL-Signature"] = "0" * 64
    assert_error(httpx.put(url, headers=forged, json={"confirmed": True}), 403)
    # The signature covers one subscription only.
    other = subscribe(nhttp, "mailto:b@example.com", options={"require_confirmation": True})
    other_url = f"{notify_server.url}{SUBS}/{other}/confirm"
    assert_error(httpx.put(other_url, headers=signed_headers(payload),
                           json={"confirmed": True}), 403)
    expired = signed_headers(payload)
    expired["URL-Expires"] = "2000-01-01T00:00:00"
    assert_error(httpx.put(url, headers=expired, json={"confirmed": True}), 403)
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is False
    assert nhttp.get(f"{SUBS}/{other}").json()["confirmed"] is False


def test_confirm_by_the_owner_and_unconfirm(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp, options={"require_confirmation": True})
    resp = nhttp.put(f"{SUBS}/{sid}/confirm", json={"confirmed": True})
    assert resp.status_code == 204
    assert resp.headers["location"] == f"{SUBS}/{sid}/confirm"  # as Zaqar
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is True
    assert nhttp.put(f"{SUBS}/{sid}/confirm", json={"confirmed": False}).status_code == 204
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is False
    for bad in ({}, {"confirmed": "true"}, {"confirmed": 1}):
        assert_error(nhttp.put(f"{SUBS}/{sid}/confirm", json=bad), 400)
    assert_error(nhttp.put(f"{SUBS}/unknown/confirm", json={"confirmed": True}), 404)


def test_no_confirmation_needed_by_default(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp)
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is True
    assert deliveries(nhttp, sid) == []


def test_new_subscriber_needs_confirming_again(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp, options={"require_confirmation": True})
    nhttp.put(f"{SUBS}/{sid}/confirm", json={"confirmed": True})
    resp = nhttp.patch(f"{SUBS}/{sid}", json={"subscriber": "mailto:new@example.com"})
    assert resp.status_code == 204
    assert nhttp.get(f"{SUBS}/{sid}").json()["confirmed"] is False
    assert len([d for d in deliveries(nhttp, sid) if d["kind"] == "confirmation"]) == 2


# --- deliveries -------------------------------------------------------------------------


def test_deliveries_listing(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp)
    assert deliveries(nhttp, sid, "dead") == []
    resp = nhttp.get(f"{SUBS}/{sid}/deliveries")
    assert resp.json() == {"deliveries": [], "links": []}
    nhttp.post("/v2/queues/q/messages", json={"messages": [{"body": {"n": 1}, "ttl": 120}]})
    (delivery,) = deliveries(nhttp, sid)
    assert delivery["kind"] == "message"
    assert delivery["payload"]["body"] == {"n": 1} and delivery["payload"]["ttl"] == 120
    assert_error(nhttp.get(f"{SUBS}/{sid}/deliveries", params={"status": "bogus"}), 400)
    assert_error(nhttp.get(f"{SUBS}/unknown/deliveries"), 404)
    assert_error(nhttp.get(f"{SUBS}/{sid}/deliveries", params={"limit": 0}), 400)


def test_unconfirmed_subscriptions_get_no_message_deliveries(nhttp: httpx.Client) -> None:
    sid = subscribe(nhttp, options={"require_confirmation": True})
    nhttp.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
    assert [d["kind"] for d in deliveries(nhttp, sid)] == ["confirmation"]
    nhttp.put(f"{SUBS}/{sid}/confirm", json={"confirmed": True})
    nhttp.post("/v2/queues/q/messages", json={"messages": [{"body": 2}]})
    kinds = [d["kind"] for d in deliveries(nhttp, sid)]
    assert kinds == ["confirmation", "message"]


# --- python-zaqarclient -----------------------------------------------------------------


@pytest.fixture
def zclient(notify_server: NotifyServer, project: str) -> Iterator[Client]:
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    yield Client(notify_server.url, version=2, conf=conf)


def test_python_zaqarclient_subscriptions(zclient: Client, nhttp: httpx.Client) -> None:
    sub = zclient.subscription("jobs", subscriber=HOOK, ttl=3600, options={"k": "v"})
    assert sub.id and sub.subscriber == HOOK and sub.ttl == 3600
    assert sub.options == {"k": "v"} and sub.confirmed is True
    second = zclient.subscription("jobs", subscriber="mailto:ops@example.com", ttl=600)

    listed = list(zclient.subscriptions("jobs"))
    assert sorted(s.id for s in listed) == sorted([sub.id, second.id])
    assert {s.queue_name for s in listed} == {"jobs"}

    got = zclient.subscription("jobs", id=sub.id, auto_create=False)
    got.ensure_exists()
    assert got.subscriber == HOOK and got.options == {"k": "v"}

    sub.update({"ttl": 7200, "options": {"k": "w"}})
    fresh = nhttp.get(f"/v2/queues/jobs/subscriptions/{sub.id}").json()
    assert fresh["ttl"] == 7200 and fresh["options"] == {"k": "w"}

    sub.delete()
    assert [s.id for s in zclient.subscriptions("jobs")] == [second.id]
