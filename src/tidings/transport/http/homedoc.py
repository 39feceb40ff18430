"""The v2 JSON home document (RFC draft json-home), as Zaqar serves it."""

from __future__ import annotations

from typing import Any

import msgspec

_REL = "rel/"


def _resource(template: str, variables: dict[str, str], allow: list[str],
              formats: dict[str, Any] | None = None) -> dict[str, Any]:
    hints: dict[str, Any] = {"allow": allow, "formats": formats or {"application/json": {}}}
    return {"href-template": template, "href-vars": variables, "hints": hints}


_QUEUE = {"queue_name": "param/queue_name"}
_MESSAGE = {**_QUEUE, "message_id": "param/message_id"}
_CLAIM = {**_QUEUE, "claim_id": "param/claim_id"}

HOME: dict[str, Any] = {
    "resources": {
        _REL + "queues": _resource(
            "/v2/queues{?marker,limit,detailed,name,with_count}",
            {"marker": "param/marker", "limit": "param/queue_limit",
             "detailed": "param/detailed", "name": "param/name",
             "with_count": "param/with_count"}, ["GET"]),
        _REL + "queue": _resource("/v2/queues/{queue_name}", _QUEUE,
                                  ["PUT", "GET", "PATCH", "DELETE"]),
        _REL + "queue_stats": _resource("/v2/queues/{queue_name}/stats", _QUEUE, ["GET"]),
        _REL + "queue_purge": _resource("/v2/queues/{queue_name}/purge", _QUEUE, ["POST"]),
        _REL + "messages": _resource(
            "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed,"
            "include_delayed,ids,pop}",
            {**_QUEUE, "marker": "param/marker", "limit": "param/messages_limit",
             "echo": "param/echo", "include_claimed": "param/include_claimed",
             "include_delayed": "param/include_delayed", "ids": "param/ids",
             "pop": "param/pop"}, ["GET", "POST", "DELETE"]),
        _REL + "message": _resource("/v2/queues/{queue_name}/messages/{message_id}{?claim_id}",
                                    {**_MESSAGE, "claim_id": "param/claim_id"},
                                    ["GET", "DELETE"]),
        _REL + "claims": _resource("/v2/queues/{queue_name}/claims{?limit}",
                                   {**_QUEUE, "limit": "param/claim_limit"}, ["POST"]),
        # As Zaqar's: one relation per method of a claim.
        _REL + "claim": _resource("/v2/queues/{queue_name}/claims/{claim_id}", _CLAIM, ["GET"]),
        _REL + "patch_claim": _resource("/v2/queues/{queue_name}/claims/{claim_id}", _CLAIM,
                                        ["PATCH"]),
        _REL + "delete_claim": _resource("/v2/queues/{queue_name}/claims/{claim_id}", _CLAIM,
                                         ["DELETE"]),
        _REL + "ping": _resource("/v2/ping", {}, ["GET", "HEAD"]),
        _REL + "health": _resource("/v2/health", {}, ["GET", "HEAD"]),
    }
}

DOCUMENT: bytes = msgspec.json.encode(HOME)
