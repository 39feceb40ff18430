"""The load loops: one coroutine per worker, one kind of traffic per role.

Each loop runs until the phase's end time; only requests *started* inside
the measured window (after warm-up) are counted, so the figures describe a
steady state rather than connection set-up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

from tidings.bench import sqs, zaqar
from tidings.bench.http import HttpConnection, HttpError, Response, build_request
from tidings.bench.options import BenchOptions
from tidings.bench.stats import PhaseStats

# Pause after a transport error, so a dead server is not hammered in a tight
# reconnect loop that would only measure how fast connect() can fail.
_ERROR_BACKOFF = 0.01


@dataclass(frozen=True)
class Window:
    """The measured interval, in perf_counter() seconds."""

    start: float
    end: float


class Worker:
    """One connection, one Client-ID, one queue, and the phase's counters."""

    def __init__(
        self, options: BenchOptions, queue: str, stats: PhaseStats, window: Window
    ) -> None:
        target = options.target
        self.options = options
        self.queue = queue
        self.stats = stats
        self.window = window
        self.conn = HttpConnection(target.address, target.port, target.tls, target.host)
        self._target = target
        # Zaqar wants a Client-ID per client; each worker is one client.
        self._headers = {
            "Client-ID": str(uuid.uuid4()),
            "X-Project-ID": options.project,
            "Accept": "application/json",
            "User-Agent": "tidings-bench",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        # The SQS roles reach the same queue through the SQS API: the
        # project is the access key id, the queue is named by its URL.
        self._sqs_headers = sqs.headers(options.project)
        self.queue_url = sqs.queue_url(target.url, options.project, queue)
        self._counting = False  # whether the last request fell in the window

    def running(self) -> bool:
        return perf_counter() < self.window.end

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = self._headers if body is None else self._json_headers
        return build_request(method, self._target.path(path), self._target.host_header,
                             headers, body)

    def sqs_request(self, action: str, body: bytes) -> bytes:
        return build_request("POST", self._target.path("/"), self._target.host_header,
                             {**self._sqs_headers, **sqs.target(action)}, body)

    async def send(self, data: bytes, expected: tuple[int, ...]) -> Response | None:
        """Send one request; return the response if its status was expected."""
        started = perf_counter()
        self._counting = started >= self.window.start
        try:
            response = await self.conn.request(data)
        except HttpError:
            self.conn.close()
            if self._counting:
                self.stats.record_transport_error()
            await asyncio.sleep(_ERROR_BACKOFF)
            return None
        ok = response.status in expected
        if self._counting:
            self.stats.record(perf_counter() - started, response.status, ok)
        return response if ok else None

    def add_messages(self, count: int) -> None:
        if self._counting:
            self.stats.messages += count

    def bump(self, counter: str) -> None:
        if self._counting:
            self.stats.counters[counter] += 1


async def ping(w: Worker) -> None:
    """The ceiling: the cheapest request the server answers."""
    request = w.request("GET", zaqar.PING_PATH)
    while w.running():
        await w.send(request, (204,))


async def producer(w: Worker) -> None:
    o = w.options
    body = zaqar.post_body(o.messages_per_post, o.message_size, o.message_ttl)
    request = w.request("POST", zaqar.messages_path(w.queue), body)
    while w.running():
        if await w.send(request, (201,)):
            w.add_messages(o.messages_per_post)


async def consumer(w: Worker) -> None:
    """Claim a batch, then delete each claimed message by its href."""
    o = w.options
    claim = w.request(
        "POST",
        zaqar.claim_path(w.queue, o.messages_per_claim),
        zaqar.claim_body(o.claim_ttl, o.claim_grace),
    )
    while w.running():
        response = await w.send(claim, (201, 204))
        if response is None:
            continue
        hrefs = zaqar.claimed_hrefs(response.body) if response.status == 201 else []
        if not hrefs:
            w.bump("empty_claims")  # nothing claimable is not an error
            continue
        w.bump("claims")
        # Delete the whole batch even past the end time: it is at most one
        # claim's worth, and leaving claimed messages behind skews the next run.
        if o.bulk_delete:  # one DELETE ?ids=...&claim_ids=... for the batch
            path = zaqar.bulk_delete_path(w.queue, hrefs)
            if await w.send(w.request("DELETE", path), (204,)):
                w.add_messages(len(hrefs))
            continue
        for href in hrefs:
            if await w.send(w.request("DELETE", href), (204,)):
                w.add_messages(1)


async def observer(w: Worker) -> None:
    """Page through the queue by marker; start over after an empty page."""
    first = zaqar.list_path(w.queue, w.options.observer_limit)
    first_request = w.request("GET", first)
    request = first_request
    while w.running():
        response = await w.send(request, (200, 204))
        count, next_href = (0, None)
        if response is not None and response.status == 200:
            count, next_href = zaqar.listed_page(response.body)
        w.add_messages(count)
        if count and next_href:
            request = w.request("GET", zaqar.with_echo(next_href))
        else:
            request = first_request


async def sqs_producer(w: Worker) -> None:
    """SendMessage, or SendMessageBatch when a post carries several messages."""
    o = w.options
    if o.messages_per_post == 1:
        request = w.sqs_request("SendMessage", sqs.send_body(w.queue_url, o.message_size))
    else:
        request = w.sqs_request("SendMessageBatch", sqs.send_batch_body(
            w.queue_url, o.messages_per_post, o.message_size))
    while w.running():
        response = await w.send(request, (200,))
        if response is None:
            continue
        if o.messages_per_post == 1:
            w.add_messages(1)
            continue
        sent, failed = sqs.batch_counts(response.body)
        w.add_messages(sent)
        if failed:
            w.bump("failed_entries")


async def sqs_consumer(w: Worker) -> None:
    """ReceiveMessage of a batch, then one DeleteMessageBatch for it: the
    SQS counterpart of a claim and a bulk delete."""
    o = w.options
    receive = w.sqs_request("ReceiveMessage", sqs.receive_body(
        w.queue_url, o.messages_per_claim, o.claim_ttl))
    while w.running():
        response = await w.send(receive, (200,))
        if response is None:
            continue
        handles = sqs.receipt_handles(response.body)
        if not handles:
            w.bump("empty_receives")  # nothing visible is not an error
            continue
        w.bump("receives")
        # Delete the batch even past the end time, as the consumer does.
        delete = w.sqs_request("DeleteMessageBatch", sqs.delete_batch_body(w.queue_url, handles))
        response = await w.send(delete, (200,))
        if response is None:
            continue
        deleted, failed = sqs.batch_counts(response.body)
        w.add_messages(deleted)
        if failed:
            w.bump("failed_entries")


ROLES: dict[str, Callable[[Worker], Awaitable[None]]] = {
    "ping": ping,
    "producer": producer,
    "consumer": consumer,
    "observer": observer,
    "sqs_producer": sqs_producer,
    "sqs_consumer": sqs_consumer,
}
