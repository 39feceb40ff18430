"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


def assert_error(resp: httpx.Response, status: int, title: str | None = None,
                 own: bool = True) -> dict[str, Any]:
    """The response is an error with this status and a JSON body with a title.

    ``own`` errors (raised by Tidings, not by falcon's router) also carry a
    non-empty description.
    """
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("title"), str) and body["title"], body
    if title is not None:
        assert body["title"] == title, body
    if own:
        assert isinstance(body.get("description"), str) and body["description"], body
    return body


def post_messages(http: httpx.Client, queue: str, *bodies: Any, ttl: int | None = None,
                  **extra: Any) -> list[str]:
    """Post one message per body; return the new message ids."""
    messages = []
    for body in bodies:
        message: dict[str, Any] = {"body": body, **extra}
        if ttl is not None:
            message["ttl"] = ttl
        messages.append(message)
    resp = http.post(f"/v2/queues/{queue}/messages", json={"messages": messages})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def other_client(http: httpx.Client) -> httpx.Client:
    """A client in the same project with another Client-ID."""
    headers = {"X-Project-ID": http.headers["X-Project-ID"], "Client-ID": str(uuid.uuid4())}
    return httpx.Client(base_url=http.base_url, headers=headers, timeout=10)


def list_all(http: httpx.Client, queue: str, **params: Any) -> list[dict[str, Any]]:
    resp = http.get(f"/v2/queues/{queue}/messages", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["messages"]
