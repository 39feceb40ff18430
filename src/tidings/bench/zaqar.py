"""The Zaqar v2 wire details the roles need: paths, bodies, response fields.

Kept apart from the load loops so they can be unit-tested without a server.
"""

from __future__ import annotations

from urllib.parse import quote

try:  # msgspec is a server dependency and decodes several times faster
    from msgspec.json import decode as _decode
    from msgspec.json import encode as encode_json
except ImportError:  # pragma: no cover - fallback for a bare environment
    import json

    def _decode(data: bytes) -> object:  # type: ignore[no-redef]  # stands in for msgspec's
        return json.loads(data)

    def encode_json(obj: object) -> bytes:  # type: ignore[misc]  # stands in for msgspec's
        return json.dumps(obj, separators=(",", ":")).encode()


PING_PATH = "/v2/ping"


def queue_path(queue: str) -> str:
    return f"/v2/queues/{quote(queue, safe='')}"


def messages_path(queue: str) -> str:
    return queue_path(queue) + "/messages"


def claim_path(queue: str, limit: int) -> str:
    return f"{queue_path(queue)}/claims?limit={limit}"


def list_path(queue: str, limit: int) -> str:
    return f"{messages_path(queue)}?limit={limit}&echo=true"


def bulk_delete_path(queue: str, hrefs: list[str]) -> str:
    """One ``DELETE ...messages?ids=..&claim_ids=..`` for claimed message hrefs."""
    ids, claims = [], []
    for href in hrefs:
        path, _, query = href.partition("?")
        ids.append(path.rsplit("/", 1)[-1])
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "claim_id" and value not in claims:
                claims.append(value)
    target = f"{messages_path(queue)}?ids={','.join(ids)}"
    return target + (f"&claim_ids={','.join(claims)}" if claims else "")


def post_body(count: int, size: int, ttl: int) -> bytes:
    """``count`` messages whose body carries ``size`` bytes of payload."""
    message = {"ttl": ttl, "body": {"event": "bench", "payload": "x" * size}}
    return encode_json({"messages": [message] * count})


def claim_body(ttl: int, grace: int) -> bytes:
    return encode_json({"ttl": ttl, "grace": grace})


def json_object(body: bytes) -> dict:
    if not body:
        return {}
    try:
        data = _decode(body)
    except ValueError:
        return {}  # a non-JSON body is reported through the counts, not raised
    return data if isinstance(data, dict) else {}


def claimed_hrefs(body: bytes) -> list[str]:
    """The message hrefs in a claim response; each carries ``?claim_id=``."""
    messages = json_object(body).get("messages") or []
    return [m["href"] for m in messages if isinstance(m, dict) and m.get("href")]


def listed_page(body: bytes) -> tuple[int, str | None]:
    """(messages on the page, href of the next page or None)."""
    data = json_object(body)
    messages = data.get("messages") or []
    next_href = None
    for link in data.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "next":
            next_href = link.get("href")
    return len(messages), next_href


def with_echo(href: str) -> str:
    """Keep echo=true when following a next link that dropped it.

    Without it the server would hide messages posted with this worker's
    Client-ID; harmless here, but the observer should see every message.
    """
    if "echo=" in href:
        return href
    return href + ("&" if "?" in href else "?") + "echo=true"
