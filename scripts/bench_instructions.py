"""Drive one server's app in-process, with no sockets, for an instruction count.

    PYTHONPATH=<src> python scripts/bench_instructions.py post|claim|ping <requests> <clients> [url]

The ASGI app of ``tidings serve`` (Falcon, the middleware, the operations,
the storage and SQLite's group-commit writer) answers ``requests`` requests
from ``clients`` concurrent coroutines after a warm-up, and the main
thread's CPU time per request is printed. Its point is to run under
valgrind (scripts/bench_instructions.sh): on this shared machine a rate
moves by ±20 % between runs, and an instruction count by about 1 %, so two
source trees can be told apart by a few per cent. The uvicorn protocol
layer is not included. ``url`` may hold ``{d}``, a fresh temporary
directory (default ``sqlite:///{d}/h.db``). ``GC_OFF=1``: no garbage
collection while the requests are measured. ``claim``: a claim of ten
messages and the bulk delete of what it got (the bench's consumer), from a
queue prefilled with CLAIM_PREFILL messages whatever ``requests`` is, so
that two runs of different lengths differ only by their claims.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from typing import Any

from tidings import app as app_module
from tidings.config import Settings

HEADERS = [(b"client-id", b"3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f"), (b"x-project-id", b"bench"),
           (b"host", b"127.0.0.1:8888"), (b"user-agent", b"bench")]
BODY = json.dumps({"messages": [{"body": {"k": "x" * 80}, "ttl": 300}]}).encode()
BODY_10 = json.dumps({"messages": [{"body": {"k": "x" * 80}, "ttl": 3600}] * 10}).encode()
CLAIM_BODY = json.dumps({"ttl": 60, "grace": 60}).encode()
# Enough for the warm-up and 1,300 measured claims of ten (the .sh's default).
CLAIM_PREFILL = 16_000


async def call(app: Any, method: str, path: str, body: bytes = b"",
               query: bytes = b"") -> tuple[int, bytes]:
    headers = list(HEADERS)
    if body:
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8888)}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return int(messages[0]["status"]), b"".join(m.get("body", b"") for m in messages[1:])


async def claim_and_delete(app: Any) -> int:
    """Claim ten, then delete them with the claim, as a consumer does."""
    status, body = await call(app, "POST", "/v2/queues/bench/claims", CLAIM_BODY, b"limit=10")
    if status == 201:
        claimed = json.loads(body)["messages"]
        ids = ",".join(m["href"].rsplit("/", 1)[1].split("?")[0] for m in claimed)
        claim_id = claimed[0]["href"].rsplit("claim_id=", 1)[1]
        await call(app, "DELETE", "/v2/queues/bench/messages", b"",
                   f"ids={ids}&claim_ids={claim_id}".encode())
    return status


async def main(kind: str, requests: int, clients: int, url: str) -> None:
    app = app_module.create_app(Settings(storage=url, gc_interval=0))
    app_module.settle_gc()
    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    lifespan.put_nowait({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    running = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                        lifespan.get, lifespan_send))
    await started.wait()

    async def one() -> int:
        if kind == "post":
            return (await call(app, "POST", "/v2/queues/bench/messages", BODY))[0]
        if kind == "claim":
            return await claim_and_delete(app)
        return (await call(app, "GET", "/v2/ping"))[0]

    if kind == "claim":
        for _ in range(CLAIM_PREFILL // 10):
            await call(app, "POST", "/v2/queues/bench/messages", BODY_10)
    assert await one() in (201, 204)

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(client(max(1, 200 // clients)) for _ in range(clients)))
    if os.environ.get("GC_OFF"):
        # A full collection inside one run's window and not the other's
        # would move the count by tens of thousands a request.
        gc.collect()
        gc.disable()
    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    print(f"{kind}: main thread {1e6 * cpu / requests:.1f} us CPU a request, "
          f"{1e6 * wall / requests:.1f} us wall")
    lifespan.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(running, 5)


if __name__ == "__main__":
    url = sys.argv[4] if len(sys.argv) > 4 else "sqlite:///{d}/h.db"
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     url.replace("{d}", tempfile.mkdtemp())))
