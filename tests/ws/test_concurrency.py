"""200 sockets at once against one server process, each posting and claiming:
every message is delivered exactly once and no request fails."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SOCKETS = 200
POSTS_PER_SOCKET = 3
MESSAGES_PER_POST = 2


async def call(conn: ClientConnection, action: str, headers: dict[str, str],
               body: dict[str, Any]) -> tuple[int, Any]:
    await conn.send(json.dumps({"action": action, "headers": headers, "body": body}))
    reply = json.loads(await asyncio.wait_for(conn.recv(), 30))
    return reply["headers"]["status"], reply["body"]


async def run(url: str, project: str) -> tuple[list[str], list[tuple[str, Any]], list[Any]]:
    posted: list[str] = []
    claimed: list[tuple[str, Any]] = []
    failures: list[Any] = []
    posters_left = SOCKETS

    async def worker(n: int, conn: ClientConnection) -> None:
        nonlocal posters_left
        headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
        for p in range(POSTS_PER_SOCKET):
            messages = [{"body": [n, p, m], "ttl": 300} for m in range(MESSAGES_PER_POST)]
            status, body = await call(conn, "message_post", headers,
                                      {"queue_name": "shared", "messages": messages})
            if status != 201:
                failures.append(("post", status, body))
                continue
            posted.extend(body["message_ids"])
            # Claim between posts too, so posting and claiming interleave.
            await claim(conn, headers)
        posters_left -= 1
        while True:
            got = await claim(conn, headers)
            if not got:
                if posters_left == 0:
                    return
                await asyncio.sleep(0.01)

    async def claim(conn: ClientConnection, headers: dict[str, str]) -> int:
        status, body = await call(conn, "claim_create", headers,
                                  {"queue_name": "shared", "limit": 5, "ttl": 300})
        if status == 204:
            return 0
        if status != 201:
            failures.append(("claim", status, body))
            return 0
        for message in body["messages"]:
            claimed.append((message["id"], message["body"]))
            status, reply = await call(conn, "message_delete", headers,
                                       {"queue_name": "shared", "message_id": message["id"],
                                        "claim_id": body["claim_id"]})
            if status != 204:
                failures.append(("delete", status, reply))
        return len(body["messages"])

    async with AsyncExitStack() as stack:
        conns = await asyncio.gather(*(
            stack.enter_async_context(connect(url, open_timeout=30, compression=None))
            for _ in range(SOCKETS)
        ))
        await asyncio.gather(*(worker(n, conn) for n, conn in enumerate(conns)))
    return posted, claimed, failures


def test_200_sockets_post_and_claim(url: str, project: str) -> None:
    started = time.monotonic()
    posted, claimed, failures = asyncio.run(run(url, project))
    elapsed = time.monotonic() - started

    assert failures == []
    total = SOCKETS * POSTS_PER_SOCKET * MESSAGES_PER_POST
    assert len(posted) == len(set(posted)) == total
    claimed_ids = [message_id for message_id, _ in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)) == total  # each exactly once
    assert set(claimed_ids) == set(posted)
    bodies = sorted(tuple(body) for _, body in claimed)
    assert bodies == sorted((n, p, m) for n in range(SOCKETS) for p in range(POSTS_PER_SOCKET)
                            for m in range(MESSAGES_PER_POST))
    assert elapsed < 30, elapsed
