"""Queue housekeeping done by the parent between phases: create, fill, delete.

None of this is measured; it only puts the server in the state a phase
needs (queues exist, consumers have messages to claim).
"""

from __future__ import annotations

import asyncio
import uuid
from time import perf_counter

from tidings.bench import zaqar
from tidings.bench.http import HttpConnection, HttpError, Response, build_request
from tidings.bench.options import BenchOptions

# Messages per POST while prefilling; Zaqar's default ceiling is 20.
PREFILL_BATCH = 10
# Parallel connections used to prefill.
PREFILL_CONNECTIONS = 8


class BenchSetupError(RuntimeError):
    """The server could not be prepared (unreachable, or refused a request)."""


class AdminClient:
    """A plain client for the few unmeasured set-up requests."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        target = options.target
        self.conn = HttpConnection(target.address, target.port, target.tls, target.host)
        self._headers = {
            "Client-ID": str(uuid.uuid4()),
            "X-Project-ID": options.project,
            "Accept": "application/json",
        }

    async def call(self, method: str, path: str, body: bytes | None = None) -> Response:
        headers = self._headers
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        target = self.options.target
        data = build_request(method, target.path(path), target.host_header, headers, body)
        return await self.conn.request(data)


async def _create_queues(options: BenchOptions) -> None:
    client = AdminClient(options)
    try:
        for name in options.queue_names():
            response = await client.call("PUT", zaqar.queue_path(name), b"{}")
            if response.status not in (201, 204):
                raise BenchSetupError(
                    f"creating queue {name!r} returned HTTP {response.status}: "
                    f"{response.body[:200]!r}"
                )
    except HttpError as exc:
        raise BenchSetupError(f"server unreachable at {options.target.url}: {exc}") from exc
    finally:
        client.conn.close()


async def _fill_one(client: AdminClient, queue: str, batches: int, deadline: float) -> int:
    o = client.options
    body = zaqar.post_body(PREFILL_BATCH, o.message_size, o.message_ttl)
    posted = 0
    for _ in range(batches):
        if perf_counter() > deadline:
            break
        response = await client.call("POST", zaqar.messages_path(queue), body)
        if response.status != 201:
            raise BenchSetupError(f"prefill POST returned HTTP {response.status}")
        posted += PREFILL_BATCH
    return posted


async def _prefill(options: BenchOptions, per_queue: int, seconds: float) -> int:
    """Post ``per_queue`` messages (rounded up to a batch) into every queue."""
    deadline = perf_counter() + seconds
    batches_per_queue = -(-per_queue // PREFILL_BATCH)
    # Spread the connections over the queues, at least one per queue.
    per_queue_conns = max(1, PREFILL_CONNECTIONS // options.queues)
    jobs = []
    clients = []
    for name in options.queue_names():
        for n in range(per_queue_conns):
            share = batches_per_queue // per_queue_conns + (n < batches_per_queue % per_queue_conns)
            client = AdminClient(options)
            clients.append(client)
            jobs.append(_fill_one(client, name, share, deadline))
    try:
        return sum(await asyncio.gather(*jobs))
    except HttpError as exc:
        raise BenchSetupError(f"prefill failed: {exc}") from exc
    finally:
        for client in clients:
            client.conn.close()


async def _delete_queues(options: BenchOptions) -> None:
    client = AdminClient(options)
    try:
        for name in options.queue_names():
            await client.call("DELETE", zaqar.queue_path(name))
    except HttpError:
        pass  # best effort: the report matters more than the tidy-up
    finally:
        client.conn.close()


def create_queues(options: BenchOptions) -> None:
    asyncio.run(_create_queues(options))


def prefill(options: BenchOptions, per_queue: int, seconds: float) -> int:
    """Fill every queue; returns how many messages were posted in all."""
    if per_queue <= 0:
        return 0
    return asyncio.run(_prefill(options, per_queue, seconds))


def delete_queues(options: BenchOptions) -> None:
    asyncio.run(_delete_queues(options))
