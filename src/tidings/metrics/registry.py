"""Prometheus metrics of one server process, served at ``GET /metrics``.

Every app has its own ``CollectorRegistry`` (never the global one), so
tests can build several apps in one process. Where each metric is counted:

- HTTP requests (count by method, route template and status; latency by
  method and route): transport/http/access.py, a Falcon middleware. The
  route is the URI template, ``unmatched`` when none: bounded labels.
- Messages posted, claimed, deleted, and moved to a dead letter queue by
  a claim: the operation layer (api/messages.py, api/claims.py), after the
  storage call returned. The claim reports how many messages it moved
  (``ClaimResult.dead_lettered``): only moves it committed, whether or not
  it claimed anything. Messages dropped by a dead-letter policy without
  a queue are not moves and are not counted.
- Records removed by garbage collection, by ``kind``: ``messages`` and
  ``claims`` that expired, ``subscriptions`` that expired, ``deliveries``
  (those of an expired subscription, and dead ones past the retention).
  The instrumented ``gc`` of the storage adds up the ``GcResult`` it
  returns; the four kinds exist (at 0) before the first pass.
- Storage latency and failures by driver and operation: ``instrument``
  wraps the controllers of the driver once, in place (tidings.app).
- Notifications delivered, retried, dead, abandoned by subscriber kind:
  the delivery worker (notify/worker.py) of this process.
- Queue depth and oldest-message age: ``QueueSampler``, a background task
  that every ``metrics.sample_interval`` seconds reads the stats of the
  queues this process posted to (at most ``sample_max_queues``) and labels
  the ``sample_top_queues`` deepest; the rest are summed under
  ``project="_other", queue="_other"``.

With ``serve --workers N`` each worker counts in its own memory, and a
scrape, whichever worker it reaches, reports the whole server: every
worker writes a snapshot of its metrics to a directory the supervisor
made, every second and when it stops, and the worker answering the scrape
writes its own and merges them all (tidings.metrics.snapshots). Counters
and histograms are summed over every worker that ever ran, exited ones
included, and never go backwards; the other workers' counts may lag by up
to one second (the snapshot interval). The depth gauges hold, for each
queue, the latest sample any running worker took (they all read the same
storage), labelled as one process labels its own. A single process
(``--workers 1``) serves its own registry, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any, Callable, NamedTuple

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from tidings import errors
from tidings.metrics.families import Counter, Histogram
from tidings.storage.base import GcResult
from tidings.storage.wrapping import wrap_controllers

log = logging.getLogger(__name__)

# No ``*_created`` series: half the output, and nothing here reads them.
# (Counters and histograms come from tidings.metrics.families: lock-free,
# recorded on the event loop; the gauges are prometheus-client's own.)
disable_created_metrics()

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "QueueSampler", "instrument"]

HTTP_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORAGE_BUCKETS = (.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "_other"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SUBSCRIBER_KINDS = {"http": "webhook", "https": "webhook", "mailto": "mailto"}


class DepthSample(NamedTuple):
    """The last queue depth sample: when it was taken (Unix time), how long
    it took, and (project, queue, free, claimed, oldest age or None) per queue."""

    at: float
    seconds: float
    queues: list[tuple[str, str, int, int, int | None]]


def _label(value: str) -> str:
    # Topics live in a shadow project (project + "\x1ftopics").
    return _CONTROL.sub("/", value)


class Metrics:
    """The metric objects of one app and the helpers that record them."""

    def __init__(self, max_queues: int = 1000) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "tidings_http_requests", "HTTP requests answered, by method, route template and "
            "status.", ["method", "route", "status"], registry=registry)
        self.http_duration = Histogram(
            "tidings_http_request_duration_seconds", "Time to answer an HTTP request, by "
            "method and route template.", ["method", "route"], buckets=HTTP_BUCKETS,
            registry=registry)
        self.messages_posted = Counter(
            "tidings_messages_posted", "Messages posted (stored).", registry=registry)
        self.messages_claimed = Counter(
            "tidings_messages_claimed", "Messages handed out in claims.", registry=registry)
        self.messages_dead_lettered = Counter(
            "tidings_messages_dead_lettered", "Messages a claim moved to a dead letter queue "
            "(claimed _max_claim_count times).", registry=registry)
        self.messages_deleted = Counter(
            "tidings_messages_deleted", "Messages deleted: one by id (delete), by ids "
            "(bulk: the ids acknowledged, unknown ones included) or popped (pop).", ["via"],
            registry=registry)
        self.gc_removed = Counter(
            "tidings_gc_removed", "Records removed by garbage collection in this process, "
            "by kind: expired messages, claims and subscriptions; deliveries (of expired "
            "subscriptions, and dead ones past the retention).", ["kind"], registry=registry)
        self.notifications = Counter(
            "tidings_notifications", "Notification outcomes by subscriber kind: delivered, "
            "retried (each retry scheduled), dead, abandoned (lease ran out).",
            ["kind", "outcome"], registry=registry)
        self.storage_duration = Histogram(
            "tidings_storage_operation_duration_seconds", "Time of storage driver calls, by "
            "driver and operation.", ["driver", "op"], buckets=STORAGE_BUCKETS,
            registry=registry)
        self.storage_errors = Counter(
            "tidings_storage_errors", "Storage driver calls that failed (unavailable: the "
            "backend failed; exception: an unexpected error), by driver and operation.",
            ["driver", "op", "error"], registry=registry)
        self.queue_messages = Gauge(
            "tidings_queue_messages", "Live messages of the deepest queues (sampled), free or "
            "claimed; the other sampled queues summed under queue=\"_other\".",
            ["project", "queue", "state"], registry=registry)
        self.queue_oldest_age = Gauge(
            "tidings_queue_oldest_message_age_seconds", "Age of the oldest live message of "
            "the deepest queues (sampled); the largest of the others under queue=\"_other\".",
            ["project", "queue"], registry=registry)
        self.queues_sampled = Gauge(
            "tidings_queues_sampled", "Queues read by the last depth sample.",
            registry=registry)
        self.sample_duration = Gauge(
            "tidings_queue_sample_duration_seconds", "Time the last depth sample took.",
            registry=registry)
        # Label children resolved once: the request path stays cheap.
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._deleted = {via: self.messages_deleted.labels(via)
                         for via in ("delete", "bulk", "pop")}
        # Created now so each kind shows as 0 before the first gc pass (a
        # rate over a missing series is no rate); the only label values.
        self._gc_removed = {kind: self.gc_removed.labels(kind) for kind in GcResult.KINDS}
        # The queues to sample: (project, queue) in order of their last post.
        self.max_queues = max_queues
        self.queues: dict[tuple[str, str], None] = {}
        self.last_sample: DepthSample | None = None
        # serve --workers N: the merge of every worker's snapshot, served
        # at a scrape instead of this worker's own counts (set by
        # SharedMetrics; a callable, so this module needs nothing of it).
        self.merged_exposition: Callable[[], bytes] | None = None

    def families(self) -> list[Counter | Histogram]:
        """The counter and histogram families (the gauges are sampled)."""
        return [f for f in vars(self).values() if isinstance(f, (Counter, Histogram))]

    # --- recording ---------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.http_requests.labels(method, route, str(status))
        counter.inc()
        hkey = (method, route)
        histogram = self._durations.get(hkey)
        if histogram is None:
            histogram = self._durations[hkey] = self.http_duration.labels(method, route)
        histogram.observe(seconds)

    def collected(self, result: GcResult) -> None:
        """Count what a gc pass removed, by kind."""
        for kind, amount in result.by_kind().items():
            if amount > 0:
                self._gc_removed[kind].inc(amount)

    def posted(self, project: str, queue: str, count: int) -> None:
        self.messages_posted.inc(count)
        key = (project, queue)
        queues = self.queues
        if key in queues:
            if len(queues) > 1:  # most recently posted last
                del queues[key]
                queues[key] = None
            return
        queues[key] = None
        if len(queues) > self.max_queues:
            del queues[next(iter(queues))]

    def claimed(self, count: int) -> None:
        self.messages_claimed.inc(count)

    def dead_lettered(self, count: int) -> None:
        if count:
            self.messages_dead_lettered.inc(count)

    def deleted(self, via: str, count: int = 1) -> None:
        if count:
            self._deleted[via].inc(count)

    def notification(self, subscriber: str, outcome: str) -> None:
        scheme = subscriber.partition(":")[0].lower()
        kind = SUBSCRIBER_KINDS.get(scheme) or ("websocket" if scheme == "socket" else "other")
        self.notifications.labels(kind, outcome).inc()

    def exposition(self) -> bytes:
        if self.merged_exposition is not None:
            return self.merged_exposition()
        return generate_latest(self.registry)

    # --- queue depth -------------------------------------------------------

    def set_depths(self, samples: list[tuple[str, str, int, int, int | None]],
                   top: int) -> None:
        """Replace the depth gauges: ``samples`` holds (project, queue,
        free, claimed, oldest age or None); the ``top`` deepest get labels."""
        samples = sorted(samples, key=lambda s: s[2] + s[3], reverse=True)
        self.queue_messages.clear()
        self.queue_oldest_age.clear()
        for project, queue, free, claimed, oldest in samples[:top]:
            project, queue = _label(project), _label(queue)
            self.queue_messages.labels(project, queue, "free").set(free)
            self.queue_messages.labels(project, queue, "claimed").set(claimed)
            if oldest is not None:
                self.queue_oldest_age.labels(project, queue).set(oldest)
        rest = samples[top:]
        if rest:
            self.queue_messages.labels(OTHER, OTHER, "free").set(sum(s[2] for s in rest))
            self.queue_messages.labels(OTHER, OTHER, "claimed").set(sum(s[3] for s in rest))
            ages = [s[4] for s in rest if s[4] is not None]
            if ages:
                self.queue_oldest_age.labels(OTHER, OTHER).set(max(ages))
        self.queues_sampled.set(len(samples))


class QueueSampler:
    """Samples queue depth and age in the background, from when the server's
    lifespan starts it (after the storage opened) until it stops it."""

    def __init__(self, metrics: Metrics, storage: Any, interval: float, top: int) -> None:
        self.metrics = metrics
        self.storage = storage
        self.interval = interval
        self.top = max(top, 0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="queue-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep sampling; the storage may come back
                log.exception("sampling queue depths failed")

    async def sample(self) -> None:
        started = time.perf_counter()
        samples: list[tuple[str, str, int, int, int | None]] = []
        empty: list[tuple[str, str]] = []
        for project, queue in list(self.metrics.queues):
            stats = await self.storage.queues.stats(project, queue)
            if stats.total == 0:
                empty.append((project, queue))  # sampled again after its next post
            oldest = stats.oldest.age if stats.oldest is not None else None
            samples.append((project, queue, stats.free, stats.claimed, oldest))
        for key in empty:
            self.metrics.queues.pop(key, None)
        self.metrics.set_depths(samples, self.top)
        seconds = time.perf_counter() - started
        self.metrics.sample_duration.set(seconds)
        self.metrics.last_sample = DepthSample(time.time(), seconds, samples)


# --- storage instrumentation ---------------------------------------------------


def _timed(method: Callable[..., Any], op: str, driver: str, metrics: Metrics,
           after: Callable[[Any], None] | None = None) -> Callable[..., Any]:
    observe = metrics.storage_duration.labels(driver, op).observe
    failures = metrics.storage_errors
    clock = time.perf_counter

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            result = await method(*args, **kwargs)
        except errors.ServiceUnavailable:
            failures.labels(driver, op, "unavailable").inc()
            raise
        except errors.TidingsError:
            raise  # an answer (not found, claimed...), not a failure
        except Exception:
            failures.labels(driver, op, "exception").inc()
            raise
        finally:
            observe(clock() - started)
        if after is not None:
            after(result)
        return result

    timed.__name__ = getattr(method, "__name__", op)
    return timed


def instrument(storage: Any, metrics: Metrics) -> Any:
    """Time the controllers' calls and ``gc`` of ``storage``, in place (the
    driver object stays the same: isinstance checks still hold)."""
    if getattr(storage, "_tidings_instrumented", False):
        return storage
    driver = str(getattr(storage, "name", type(storage).__name__))

    def timed(op: str, method: Callable[..., Any]) -> Callable[..., Any]:
        return _timed(method, op, driver, metrics)

    wrap_controllers(storage, storage, timed)
    storage.gc = _timed(storage.gc, "gc", driver, metrics, metrics.collected)
    storage._tidings_instrumented = True
    return storage
