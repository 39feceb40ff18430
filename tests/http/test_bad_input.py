"""Bad input, one table: each request is refused with the right status and
title, the error body is JSON, and nothing was written.

Every case runs against the same known state: a queue ``q`` (with metadata)
holding two messages, one of them claimed. The state is captured before the
request and compared after it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.http.util import JSON_PATCH, assert_error

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
UNSET: Any = object()

QUEUE_META = {"color": "red", "_max_messages_post_size": 8192}

INVALID_API = "Invalid API request"
INVALID_BODY = "Invalid request body"
INVALID_PARAM = "Invalid parameter"
INVALID_QUEUE = "Invalid queue identification"
NOT_FOUND = "Not found"

UNKNOWN_CLAIM = "0123456789abcdef01234567"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # may use {msg} (the free message) and {claim} (the live claim)
    status: int
    title: str
    headers: dict[str, str | None] = field(default_factory=dict)  # None removes
    params: dict[str, Any] | str | None = None
    json: Any = UNSET  # encoded as JSON
    content: bytes | None = None  # raw body
    content_type: str | None = None  # defaults to JSON when there is a body
    chunked: bool = False  # send the body without a Content-Length


def many_ids(n: int) -> str:
    return ",".join(f"{i + 1:x}" for i in range(n))


def post(*messages: Any) -> dict[str, Any]:
    return {"messages": list(messages)}


MESSAGES = "/v2/queues/q/messages"
CLAIMS = "/v2/queues/q/claims"
BIG = "x" * (256 * 1024)

CASES = [
    # --- message posts: bodies -----------------------------------------
    Case("post-malformed-json", "POST", MESSAGES, 400, INVALID_BODY,
         content=b'{"messages": [{"body": 1}'),
    Case("post-not-json-at-all", "POST", MESSAGES, 400, INVALID_BODY, content=b"hello"),
    Case("post-empty-body", "POST", MESSAGES, 400, INVALID_BODY, content=b""),
    Case("post-body-a-list", "POST", MESSAGES, 400, INVALID_BODY, json=[{"body": 1}]),
    Case("post-body-a-string", "POST", MESSAGES, 400, INVALID_BODY, json="messages"),
    Case("post-messages-missing", "POST", MESSAGES, 400, INVALID_BODY, json={"body": 1}),
    Case("post-messages-not-a-list", "POST", MESSAGES, 400, INVALID_BODY,
         json={"messages": {"body": 1}}),
    Case("post-message-not-an-object", "POST", MESSAGES, 400, INVALID_BODY,
         json=post(1)),
    Case("post-message-a-string", "POST", MESSAGES, 400, INVALID_BODY, json=post("hello")),
    Case("post-message-without-body", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"ttl": 60})),
    Case("post-ttl-string", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"body": 1, "ttl": "60"})),
    Case("post-ttl-bool", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"body": 1, "ttl": True})),
    Case("post-ttl-float", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"body": 1, "ttl": 60.5})),
    Case("post-ttl-null", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"body": 1, "ttl": None})),
    Case("post-delay-string", "POST", MESSAGES, 400, INVALID_BODY,
         json=post({"body": 1, "delay": "5"})),
    Case("post-ttl-59", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": 1, "ttl": 59})),
    Case("post-ttl-1209601", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": 1, "ttl": 1209601})),
    Case("post-delay-minus-1", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": 1, "delay": -1})),
    Case("post-delay-901", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": 1, "delay": 901})),
    Case("post-empty-messages", "POST", MESSAGES, 400, INVALID_API, json=post()),
    Case("post-one-bad-among-good", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": 1}, {"body": 2}, {"body": 3, "ttl": 59})),
    Case("post-over-256-kib", "POST", "/v2/queues/other/messages", 400, INVALID_API,
         json=post({"body": BIG})),
    Case("post-over-256-kib-chunked", "POST", "/v2/queues/other/messages", 400, INVALID_API,
         content=json.dumps(post({"body": BIG})).encode(), chunked=True),
    Case("post-over-queue-max-post-size", "POST", MESSAGES, 400, INVALID_API,
         json=post({"body": "x" * 9000})),
    Case("post-form-encoded", "POST", MESSAGES, 400, "Invalid Content-Type",
         content=b"messages=hello", content_type=FORM),
    Case("post-form-encoded-upper-case", "POST", MESSAGES, 400, "Invalid Content-Type",
         content=b'{"messages": [{"body": 1}]}',
         content_type="Application/X-WWW-Form-Urlencoded; charset=utf-8"),
    Case("post-not-utf8", "POST", MESSAGES, 400, INVALID_BODY,
         content='{"messages": [{"body": "caf\u00e9"}]}'.encode("latin-1")),
    Case("post-nested-too-deeply", "POST", MESSAGES, 400, INVALID_BODY,
         content=b'{"messages": [{"body": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"),
    Case("post-top-level-nested-too-deeply", "POST", MESSAGES, 400, INVALID_BODY,
         content=b"[" * 100_000 + b"]" * 100_000),
    # A post that fails validation must not create its queue.
    Case("post-bad-ttl-new-queue", "POST", "/v2/queues/fresh/messages", 400, INVALID_API,
         json=post({"body": 1, "ttl": 59})),
    Case("post-bad-json-new-queue", "POST", "/v2/queues/fresh/messages", 400, INVALID_BODY,
         content=b"{"),
    Case("post-wrong-type-new-queue", "POST", "/v2/queues/fresh/messages", 400,
         INVALID_BODY, json=post("hello")),
    # --- identifying headers --------------------------------------------
    Case("no-client-id-post", "POST", MESSAGES, 400, "Missing header value",
         headers={"Client-ID": None}, json=post({"body": 1})),
    Case("no-client-id-list", "GET", MESSAGES, 400, "Missing header value",
         headers={"Client-ID": None}),
    Case("no-client-id-put-queue", "PUT", "/v2/queues/fresh", 400, "Missing header value",
         headers={"Client-ID": None}),
    Case("client-id-not-uuid", "POST", MESSAGES, 400, "Wrong UUID value",
         headers={"Client-ID": "not-a-uuid"}, json=post({"body": 1})),
    Case("client-id-empty", "PUT", "/v2/queues/fresh", 400, "Wrong UUID value",
         headers={"Client-ID": ""}),
    Case("no-project", "PUT", "/v2/queues/fresh", 400, "Project-Id Missing",
         headers={"X-Project-ID": None}),
    Case("no-project-post", "POST", MESSAGES, 400, "Project-Id Missing",
         headers={"X-Project-ID": None}, json=post({"body": 1})),
    Case("empty-project", "PUT", "/v2/queues/fresh", 400, "Empty project header not allowed",
         headers={"X-Project-ID": ""}),
    Case("project-257-chars", "PUT", "/v2/queues/fresh", 400, INVALID_QUEUE,
         headers={"X-Project-ID": "p" * 257}),
    # --- queue names ------------------------------------------------------
    Case("queue-name-65-chars", "PUT", "/v2/queues/" + "a" * 65, 400, INVALID_QUEUE),
    Case("queue-name-colon", "PUT", "/v2/queues/a:b", 400, INVALID_QUEUE),  # dots are fine
    Case("queue-name-space", "PUT", "/v2/queues/a%20b", 400, INVALID_QUEUE),
    Case("queue-name-unicode", "PUT", "/v2/queues/caf%C3%A9", 400, INVALID_QUEUE),
    Case("queue-name-empty", "PUT", "/v2/queues/", 400, INVALID_QUEUE),
    Case("queue-name-bad-post", "POST", "/v2/queues/a:b/messages", 400, INVALID_QUEUE,
         json=post({"body": 1})),
    Case("queue-name-bad-claim", "POST", "/v2/queues/a:b/claims", 400, INVALID_QUEUE,
         json={}),
    Case("queue-name-bad-stats", "GET", "/v2/queues/a:b/stats", 400, INVALID_QUEUE),
    Case("queue-name-bad-delete", "DELETE", "/v2/queues/a:b", 400, INVALID_QUEUE),
    # --- query values -----------------------------------------------------
    Case("queues-limit-0", "GET", "/v2/queues", 400, INVALID_API, params={"limit": 0}),
    Case("queues-limit-21", "GET", "/v2/queues", 400, INVALID_API, params={"limit": 21}),
    Case("queues-limit-minus-1", "GET", "/v2/queues", 400, INVALID_API,
         params={"limit": -1}),
    Case("queues-limit-abc", "GET", "/v2/queues", 400, INVALID_PARAM,
         params={"limit": "abc"}),
    Case("queues-detailed-maybe", "GET", "/v2/queues", 400, INVALID_PARAM,
         params={"detailed": "maybe"}),
    Case("queues-with-count-maybe", "GET", "/v2/queues", 400, INVALID_PARAM,
         params={"with_count": "maybe"}),
    Case("messages-limit-0", "GET", MESSAGES, 400, INVALID_API, params={"limit": 0}),
    Case("messages-limit-21", "GET", MESSAGES, 400, INVALID_API, params={"limit": 21}),
    Case("messages-limit-minus-1", "GET", MESSAGES, 400, INVALID_API, params={"limit": -1}),
    Case("messages-limit-abc", "GET", MESSAGES, 400, INVALID_PARAM, params={"limit": "abc"}),
    Case("messages-echo-maybe", "GET", MESSAGES, 400, INVALID_PARAM,
         params={"echo": "maybe"}),
    Case("messages-include-claimed-maybe", "GET", MESSAGES, 400, INVALID_PARAM,
         params={"include_claimed": "maybe"}),
    Case("messages-include-delayed-maybe", "GET", MESSAGES, 400, INVALID_PARAM,
         params={"include_delayed": "maybe"}),
    Case("claims-limit-0", "POST", CLAIMS, 400, INVALID_API, params={"limit": 0}, json={}),
    Case("claims-limit-21", "POST", CLAIMS, 400, INVALID_API, params={"limit": 21}, json={}),
    Case("claims-limit-minus-1", "POST", CLAIMS, 400, INVALID_API, params={"limit": -1},
         json={}),
    Case("claims-limit-abc", "POST", CLAIMS, 400, INVALID_PARAM, params={"limit": "abc"},
         json={}),
    Case("pop-0", "DELETE", MESSAGES, 400, INVALID_API, params={"pop": 0}),
    Case("pop-21", "DELETE", MESSAGES, 400, INVALID_API, params={"pop": 21}),
    Case("pop-minus-1", "DELETE", MESSAGES, 400, INVALID_API, params={"pop": -1}),
    Case("pop-abc", "DELETE", MESSAGES, 400, INVALID_PARAM, params={"pop": "abc"}),
    Case("get-21-ids", "GET", MESSAGES, 400, INVALID_API, params={"ids": many_ids(21)}),
    Case("delete-21-ids", "DELETE", MESSAGES, 400, INVALID_API,
         params={"ids": many_ids(21)}),
    Case("delete-ids-and-pop", "DELETE", MESSAGES, 400, INVALID_API,
         params={"ids": "{msg}", "pop": 1}),
    Case("delete-neither-ids-nor-pop", "DELETE", MESSAGES, 400, INVALID_API),
    # --- claims -----------------------------------------------------------
    Case("claim-ttl-59", "POST", CLAIMS, 400, INVALID_API, json={"ttl": 59, "grace": 60}),
    Case("claim-ttl-43201", "POST", CLAIMS, 400, INVALID_API,
         json={"ttl": 43201, "grace": 60}),
    Case("claim-grace-59", "POST", CLAIMS, 400, INVALID_API, json={"ttl": 60, "grace": 59}),
    Case("claim-grace-43201", "POST", CLAIMS, 400, INVALID_API,
         json={"ttl": 60, "grace": 43201}),
    Case("claim-ttl-string", "POST", CLAIMS, 400, INVALID_BODY,
         json={"ttl": "60", "grace": 60}),
    Case("claim-grace-bool", "POST", CLAIMS, 400, INVALID_BODY,
         json={"ttl": 60, "grace": False}),
    Case("claim-body-a-list", "POST", CLAIMS, 400, INVALID_BODY, json=[{"ttl": 60}]),
    Case("claim-body-a-number", "POST", CLAIMS, 400, INVALID_BODY, json=60),
    Case("claim-malformed-json", "POST", CLAIMS, 400, INVALID_BODY, content=b"{ttl: 60}"),
    Case("claim-limit-in-body-string", "POST", CLAIMS, 400, INVALID_BODY,
         json={"ttl": 60, "grace": 60, "limit": "5"}),
    Case("claim-limit-in-body-21", "POST", CLAIMS, 400, INVALID_API,
         json={"ttl": 60, "grace": 60, "limit": 21}),
    Case("claim-form-encoded", "POST", CLAIMS, 400, "Invalid Content-Type",
         content=b"ttl=60", content_type=FORM),
    Case("claim-no-client-id", "POST", CLAIMS, 400, "Missing header value",
         headers={"Client-ID": None}, json={}),
    Case("claim-patch-ttl-59", "PATCH", CLAIMS + "/{claim}", 400, INVALID_API,
         json={"ttl": 59}),
    Case("claim-patch-ttl-43201", "PATCH", CLAIMS + "/{claim}", 400, INVALID_API,
         json={"ttl": 43201}),
    Case("claim-patch-grace-59", "PATCH", CLAIMS + "/{claim}", 400, INVALID_API,
         json={"ttl": 100, "grace": 59}),
    Case("claim-patch-ttl-string", "PATCH", CLAIMS + "/{claim}", 400, INVALID_BODY,
         json={"ttl": "100"}),
    Case("claim-patch-body-a-list", "PATCH", CLAIMS + "/{claim}", 400, INVALID_BODY,
         json=[{"ttl": 100}]),
    Case("claim-patch-empty-body", "PATCH", CLAIMS + "/{claim}", 400, INVALID_BODY,
         content=b""),
    Case("claim-patch-malformed", "PATCH", CLAIMS + "/{claim}", 400, INVALID_BODY,
         content=b'{"ttl": '),
    Case("claim-get-unknown", "GET", CLAIMS + "/" + UNKNOWN_CLAIM, 404, NOT_FOUND),
    Case("claim-patch-unknown", "PATCH", CLAIMS + "/" + UNKNOWN_CLAIM, 404, NOT_FOUND,
         json={"ttl": 100}),
    Case("claim-get-garbage", "GET", CLAIMS + "/not-a-claim", 404, NOT_FOUND),
    Case("claim-get-zeros", "GET", CLAIMS + "/000000000000000000000000", 404, NOT_FOUND),
    Case("claim-patch-garbage", "PATCH", CLAIMS + "/%27%3B--", 404, NOT_FOUND,
         json={"ttl": 100}),
    Case("claim-get-other-queue", "GET", "/v2/queues/other/claims/{claim}", 404, NOT_FOUND),
    # --- messages by id ---------------------------------------------------
    Case("message-get-unknown", "GET", MESSAGES + "/ffffffffff", 404, NOT_FOUND),
    Case("message-get-past-int64", "GET", MESSAGES + "/ffffffffffffffff", 404, NOT_FOUND),
    Case("message-get-int64-min", "GET", MESSAGES + "/8000000000000000", 404, NOT_FOUND),
    Case("bulk-get-past-int64", "GET", MESSAGES, 404, NOT_FOUND,
         params={"ids": "ffffffffffffffff,8000000000000000"}),
    Case("message-get-garbage", "GET", MESSAGES + "/not-a-message", 404, NOT_FOUND),
    Case("message-get-other-queue", "GET", "/v2/queues/other/messages/{msg}", 404,
         NOT_FOUND),
    Case("bulk-get-none-found", "GET", MESSAGES, 404, NOT_FOUND,
         params={"ids": "ffffffffff,eeeeeeeeee"}),
    Case("message-delete-claimed-no-claim-id", "DELETE", MESSAGES + "/{claimed}", 403,
         "Unable to delete"),
    Case("message-delete-claimed-unknown-claim", "DELETE", MESSAGES + "/{claimed}", 400,
         "Unable to delete", params={"claim_id": UNKNOWN_CLAIM}),
    Case("message-delete-unclaimed-with-claim-id", "DELETE", MESSAGES + "/{msg}", 400,
         "Unable to delete", params={"claim_id": "{claim}"}),
    # --- queue metadata ---------------------------------------------------
    Case("put-metadata-over-64-kib", "PUT", "/v2/queues/fresh", 400, INVALID_API,
         json={"big": "x" * (64 * 1024)}),
    Case("put-metadata-a-list", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         json=["color", "red"]),
    Case("put-metadata-a-string", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         json="red"),
    Case("put-metadata-malformed", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         content=b'{"color": red}'),
    Case("put-metadata-nested-too-deeply", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         content=b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    Case("put-metadata-not-utf8", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         content=b'{"a": "\xff"}'),
    Case("put-metadata-form-encoded", "PUT", "/v2/queues/fresh", 400, "Invalid Content-Type",
         content=b"color=red", content_type=FORM),
    Case("put-default-ttl-10", "PUT", "/v2/queues/fresh", 400, INVALID_API,
         json={"_default_message_ttl": 10}),
    Case("put-default-delay-901", "PUT", "/v2/queues/fresh", 400, INVALID_API,
         json={"_default_message_delay": 901}),
    Case("put-max-post-size-string", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         json={"_max_messages_post_size": "x"}),
    Case("put-dead-letter-queue-number", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         json={"_max_claim_count": 1, "_dead_letter_queue": 5}),
    Case("put-dead-letter-queue-bad-name", "PUT", "/v2/queues/fresh", 400, INVALID_QUEUE,
         json={"_max_claim_count": 1, "_dead_letter_queue": "a:b"}),
    Case("put-max-claim-count-0", "PUT", "/v2/queues/fresh", 400, INVALID_API,
         json={"_max_claim_count": 0}),
    Case("put-encrypt-not-bool", "PUT", "/v2/queues/fresh", 400, INVALID_BODY,
         json={"_enable_encrypt_messages": "yes"}),
    Case("put-bad-metadata-existing-queue", "PUT", "/v2/queues/q", 400, INVALID_API,
         json={"_default_message_ttl": 10}),
    # --- PATCH ------------------------------------------------------------
    Case("patch-body-an-object", "PATCH", "/v2/queues/q", 400, INVALID_BODY,
         json={"op": "add", "path": "/metadata/x", "value": 1}, content_type=JSON_PATCH),
    Case("patch-change-not-an-object", "PATCH", "/v2/queues/q", 400, INVALID_BODY,
         json=["add"], content_type=JSON_PATCH),
    Case("patch-op-unknown", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"op": "move", "path": "/metadata/x", "value": 1}], content_type=JSON_PATCH),
    Case("patch-op-missing", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"path": "/metadata/x", "value": 1}], content_type=JSON_PATCH),
    Case("patch-path-not-metadata", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"op": "add", "path": "/color", "value": 1}], content_type=JSON_PATCH),
    Case("patch-path-bare-metadata", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"op": "add", "path": "/metadata/", "value": 1}], content_type=JSON_PATCH),
    Case("patch-add-without-value", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"op": "add", "path": "/metadata/x"}], content_type=JSON_PATCH),
    Case("patch-reserved-out-of-range", "PATCH", "/v2/queues/q", 400, INVALID_API,
         json=[{"op": "add", "path": "/metadata/x", "value": 1},
               {"op": "replace", "path": "/metadata/_max_messages_post_size",
                "value": 0}], content_type=JSON_PATCH),
    Case("patch-reserved-wrong-type", "PATCH", "/v2/queues/q", 400, INVALID_BODY,
         json=[{"op": "add", "path": "/metadata/_dead_letter_queue", "value": 5}],
         content_type=JSON_PATCH),
    Case("patch-empty-body", "PATCH", "/v2/queues/q", 400, INVALID_BODY, content=b"",
         content_type=JSON_PATCH),
    Case("patch-malformed", "PATCH", "/v2/queues/q", 400, INVALID_BODY, content=b"[{",
         content_type=JSON_PATCH),
    Case("patch-content-type-json", "PATCH", "/v2/queues/q", 415,
         "415 Unsupported Media Type",
         json=[{"op": "add", "path": "/metadata/x", "value": 1}], content_type=JSON),
    Case("patch-content-type-missing", "PATCH", "/v2/queues/q", 415,
         "415 Unsupported Media Type",
         json=[{"op": "add", "path": "/metadata/x", "value": 1}], content_type=""),
    Case("patch-remove-missing-key", "PATCH", "/v2/queues/q", 409, "Resource conflict",
         json=[{"op": "add", "path": "/metadata/x", "value": 1},
               {"op": "remove", "path": "/metadata/nope"}], content_type=JSON_PATCH),
    Case("patch-replace-missing-key", "PATCH", "/v2/queues/q", 409, "Resource conflict",
         json=[{"op": "replace", "path": "/metadata/nope", "value": 1}],
         content_type=JSON_PATCH),
    Case("patch-missing-queue", "PATCH", "/v2/queues/fresh", 404, NOT_FOUND,
         json=[{"op": "add", "path": "/metadata/x", "value": 1}], content_type=JSON_PATCH),
    # --- purge ------------------------------------------------------------
    Case("purge-unknown-type", "POST", "/v2/queues/q/purge", 400, INVALID_API,
         json={"resource_types": ["messages", "bogus"]}),
    Case("purge-empty-types", "POST", "/v2/queues/q/purge", 400, INVALID_API,
         json={"resource_types": []}),
    Case("purge-no-types", "POST", "/v2/queues/q/purge", 400, INVALID_API, json={}),
    Case("purge-types-not-a-list", "POST", "/v2/queues/q/purge", 400, INVALID_BODY,
         json={"resource_types": "messages"}),
    Case("purge-body-a-list", "POST", "/v2/queues/q/purge", 400, INVALID_BODY,
         json=["messages"]),
    Case("purge-malformed", "POST", "/v2/queues/q/purge", 400, INVALID_BODY, content=b"{"),
]


@dataclass
class State:
    free_id: str
    claimed_id: str
    claim_id: str


def snapshot(http: httpx.Client, claim_id: str) -> dict[str, Any]:
    """Everything a bad request could have changed, minus ages."""
    queues = http.get("/v2/queues", params={"detailed": "true", "limit": 20})
    assert queues.status_code == 200
    stats = http.get("/v2/queues/q/stats").json()["messages"]
    for label in ("oldest", "newest"):
        if label in stats:
            stats[label] = stats[label]["href"]
    messages = http.get("/v2/queues/q/messages", params={
        "echo": "true", "include_claimed": "true", "include_delayed": "true", "limit": 20})
    claim = http.get(f"/v2/queues/q/claims/{claim_id}").json()
    return {
        "queues": queues.json()["queues"],
        "metadata": http.get("/v2/queues/q").json(),
        "stats": stats,
        "messages": [(m["href"], m["body"], m["ttl"]) for m in messages.json()["messages"]],
        "claim": (claim["ttl"], [m["id"] for m in claim["messages"]]),
        "other": http.get("/v2/queues/other/stats").json(),
    }


@pytest.fixture
def state(http: httpx.Client) -> State:
    assert http.put("/v2/queues/q", json=QUEUE_META).status_code == 201
    resp = http.post(MESSAGES, json=post({"body": "first", "ttl": 600},
                                         {"body": "second", "ttl": 600}))
    assert resp.status_code == 201
    first, second = (href.rsplit("/", 1)[1] for href in resp.json()["resources"])
    claim = http.post(CLAIMS, params={"limit": 1}, json={"ttl": 300, "grace": 60})
    assert claim.status_code == 201
    assert claim.json()["messages"][0]["id"] == first
    return State(free_id=second, claimed_id=first,
                 claim_id=claim.headers["location"].rsplit("/", 1)[1])


@pytest.fixture
def raw(server_url: str) -> Iterator[httpx.Client]:
    """A client with no default headers: each case sends exactly its own."""
    with httpx.Client(base_url=server_url, timeout=10) as client:
        yield client


def fill(text: str, state: State) -> str:
    return (text.replace("{msg}", state.free_id).replace("{claimed}", state.claimed_id)
            .replace("{claim}", state.claim_id))


def build(case: Case, state: State, headers: dict[str, str]) -> dict[str, Any]:
    sent: dict[str, str] = dict(headers)
    body: bytes | None = case.content
    if case.json is not UNSET:
        body = json.dumps(case.json).encode()
    if body is not None:
        sent["Content-Type"] = JSON if case.content_type is None else case.content_type
    for name, value in case.headers.items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    if sent.get("Content-Type") == "":
        del sent["Content-Type"]
    params = case.params
    if isinstance(params, dict):
        params = {key: fill(str(value), state) for key, value in params.items()}
    request: dict[str, Any] = {"method": case.method, "url": fill(case.path, state),
                               "headers": sent, "params": params}
    if body is not None:
        request["content"] = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) \
            if case.chunked else body
    return request


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, http: httpx.Client, raw: httpx.Client, state: State,
                   headers: dict[str, str]) -> None:
    before = snapshot(http, state.claim_id)
    resp = raw.request(**build(case, state, headers))
    assert resp.status_code < 500, resp.text
    assert_error(resp, case.status, case.title)
    assert snapshot(http, state.claim_id) == before


def test_chunked_case_sends_no_length(state: State, headers: dict[str, str]) -> None:
    case = next(c for c in CASES if c.chunked)
    request = httpx.Request(**build(case, state, headers))
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"


def test_good_requests_pass_the_same_checks(http: httpx.Client, state: State) -> None:
    """The table's requests fail for the reason given: the same requests
    with that one thing fixed succeed."""
    assert http.post(MESSAGES, json=post({"body": 1, "ttl": 60},
                                         {"body": 2, "ttl": 1209600, "delay": 900})
                     ).status_code == 201
    assert http.post(MESSAGES, json=post({"body": "x" * 8000})).status_code == 201
    assert http.post("/v2/queues/other/messages",
                     json=post({"body": "x" * 200_000})).status_code == 201
    assert http.put("/v2/queues/" + "a" * 64).status_code == 201
    assert http.put("/v2/queues/A-z_0-9").status_code == 201
    assert http.get("/v2/queues", params={"limit": 20}).status_code == 200
    assert http.get(MESSAGES, params={"limit": 20}).status_code == 200
    assert http.get(MESSAGES, params={"ids": state.free_id}).status_code == 200
    assert http.patch(f"{CLAIMS}/{state.claim_id}",
                      json={"ttl": 43200, "grace": 43200}).status_code == 204
    assert http.put("/v2/queues/fresh", json={"big": "x" * (60 * 1024)}).status_code == 201
    resp = http.post(CLAIMS, json={"ttl": 60, "grace": 60}, params={"limit": 20})
    assert resp.status_code == 201
    assert http.delete(MESSAGES, params={"pop": 20}).status_code == 200


def test_unknown_client_id_format_variants(raw: httpx.Client, headers: dict[str, str]) -> None:
    # Any UUID spelling Python accepts is fine; nothing else is.
    good = str(uuid.uuid4())
    for value in (good, good.upper(), good.replace("-", "")):
        resp = raw.get("/v2/queues", headers={**headers, "Client-ID": value})
        assert resp.status_code == 200, value
    for value in ("1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
        assert_error(raw.get("/v2/queues", headers={**headers, "Client-ID": value}),
                     400, "Wrong UUID value")


def test_snapshot_sees_writes(http: httpx.Client, state: State) -> None:
    """The no-write check is able to fail."""
    writes = [
        lambda: http.post(MESSAGES, json=post({"body": 1})),
        lambda: http.put("/v2/queues/fresh"),
        lambda: http.patch("/v2/queues/q", json=[{"op": "add", "path": "/metadata/x",
                                                   "value": 1}],
                           headers={"Content-Type": JSON_PATCH}),
        lambda: http.patch(f"{CLAIMS}/{state.claim_id}", json={"ttl": 100}),
        lambda: http.post("/v2/queues/other/messages", json=post({"body": 1})),
        lambda: http.delete(f"{MESSAGES}/{state.free_id}"),
    ]
    for write in writes:
        before = snapshot(http, state.claim_id)
        assert write().status_code < 300
        assert snapshot(http, state.claim_id) != before
