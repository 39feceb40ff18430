"""Build the whole ASGI application from the settings.

The storage driver opens when the server starts (ASGI lifespan) and closes
when it stops; the garbage collector runs beside the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
from typing import Any, Callable

import falcon.asgi
import msgspec

from tidings import errors
from tidings.api.context import Service
from tidings.api.quotas import Quotas
from tidings.auth import Policy, PolicyError
from tidings.auth.authenticator import Authenticator
from tidings.auth.signed import SigningKey
from tidings.auth.trusts import Trusts
from tidings.config import WORKER_METRICS_ENV, WORKER_SETTINGS_ENV, Settings
from tidings.metrics import Metrics, QueueSampler, instrument
from tidings.metrics.snapshots import SharedMetrics, SnapshotWriter
from tidings.notify import Notifier, sockets
from tidings.notify.relay import Relay
from tidings.storage.base import Clock, DataDriver, system_clock
from tidings.storage.build import build_storage
from tidings.transport import sqs, ws
from tidings.transport.http.app import create_http_app

log = logging.getLogger(__name__)


class Lifespan:
    """Falcon middleware (lifespan only), the server's one: starts the
    storage and the background tasks in a defined order, and stops them in
    the reverse order (an AsyncExitStack), also when a start fails half-way.

    The order of the start (the stop is its reverse):

    1. the metrics snapshots: they stop last, once nothing counts any more;
    2. the authenticator: nothing to start; its Keystone client closes
       after the storage, once no request can need a token checked;
    3. the storage, then the signing key it keeps (load_signing_key);
    4. gc, which needs the open storage;
    5. the relay, which takes pushes for this process's WebSockets;
    6. the delivery worker, which sends through the relay and the storage:
       it stops before both, its sends in flight given their grace;
    7. the queue sampler, which reads the open storage.
    """

    def __init__(self, storage: DataDriver, gc_interval: float,
                 auth: Authenticator | None = None, notifier: Notifier | None = None,
                 relay: Relay | None = None, signing_key: SigningKey | None = None,
                 snapshots: SnapshotWriter | None = None,
                 sampler: QueueSampler | None = None) -> None:
        self.storage = storage
        # Gets the stored signing key when none is configured.
        self.signing_key = signing_key
        self.gc_interval = gc_interval
        self.auth = auth
        # The delivery worker (notifications.worker_in_server).
        self.notifier = notifier
        # Takes pushes for this process's WebSockets from any worker, whether
        # or not this process runs one.
        self.relay = relay
        self.snapshots = snapshots
        self.sampler = sampler
        self._stack: contextlib.AsyncExitStack | None = None

    async def process_startup(self, scope: Any, event: Any) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        # The order is the class docstring's.
        if self.snapshots is not None:
            await self.snapshots.start()
            stack.push_async_callback(self.snapshots.stop)
        if self.auth is not None:
            stack.push_async_callback(self.auth.close)
        await self.storage.open()
        stack.push_async_callback(self.storage.close)
        if self.signing_key is not None:
            await load_signing_key(self.storage, self.signing_key)
        if self.gc_interval > 0:
            stack.push_async_callback(_cancel, asyncio.create_task(self._collect_garbage()))
        if self.relay is not None:
            await self.relay.start()
            stack.push_async_callback(self.relay.stop)
        if self.notifier is not None:
            self.notifier.start()
            stack.push_async_callback(self.notifier.stop)
        if self.sampler is not None:
            await self.sampler.start()
            stack.push_async_callback(self.sampler.stop)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _collect_garbage(self) -> None:
        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                removed = await self.storage.gc()
                if removed.total:
                    log.info("gc removed %d expired records (%s)", removed.total, removed)
            except errors.ServiceUnavailable as exc:
                # The storage said what is wrong (down, out of space): one line.
                log.warning("gc pass failed: %s", exc.description)
            except Exception:  # keep collecting; the next pass may succeed
                log.exception("gc pass failed")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


SIGNING_KEY_NAME = "signed-urls"


async def load_signing_key(storage: DataDriver, signing_key: SigningKey) -> None:
    """Without ``auth.secret_key``, pre-signed URLs are signed with a key
    generated once and kept with the data (DataDriver.stored_secret), so
    ``POST .../share`` works out of the box, as Zaqar's does, and every
    worker and node of the deployment signs and verifies alike. A
    configured key always wins."""
    if signing_key.value is not None:
        return
    try:
        key = await storage.stored_secret(SIGNING_KEY_NAME)
    except Exception as exc:  # noqa: BLE001 - signed URLs stay off (503), the rest works
        log.warning("pre-signed URLs are off: no auth.secret_key, and the storage could "
                    "not keep a generated one (%s)", exc)
        return
    signing_key.set(key)


def create_app(settings: Settings, clock: Clock = system_clock,
               metrics_dir: str | None = None) -> falcon.asgi.App:
    """The app of one server process; ``metrics_dir``: the directory where
    the workers of ``serve --workers N`` share their metrics, so that
    /metrics reports them all (tidings.metrics.snapshots)."""
    storage = build_storage(settings, clock)
    auth = Authenticator(settings.auth)
    metrics = Metrics(settings.metrics.sample_max_queues) if settings.metrics.enabled else None
    if metrics is not None:
        instrument(storage, metrics)
    # trust+ subscribers: trusts to the service user the validator logs in as.
    trusts = Trusts(auth.keystone) if auth.keystone is not None else None
    relay = Relay(storage, sockets.REGISTRY,
                  ack_timeout=settings.notifications.socket_ack_timeout)
    notifier = None
    if settings.notifications.worker_in_server:
        notifier = Notifier.from_settings(storage, settings, relay=relay, trusts=trusts,
                                          metrics=metrics)
    service = build_service(settings, storage, auth, metrics=metrics, trusts=trusts,
                            wake_notifier=notifier.wake if notifier is not None else None)
    observe, sampler = observability(settings, metrics, storage, service.default_project)
    snapshots = None
    if metrics is not None and metrics_dir:
        snapshots = SnapshotWriter(SharedMetrics(metrics, metrics_dir,
                                                 settings.metrics.sample_top_queues))
    lifespan = Lifespan(storage, settings.gc_interval, auth, notifier, relay,
                        service.signing_key, snapshots=snapshots, sampler=sampler)
    app = create_http_app(service, middleware=[lifespan],
                          socket=ws.Endpoint(service, settings.websocket, auth), auth=auth,
                          request_id=observe,
                          sqs=sqs.Endpoint(service, auth, sqs.receipt_key(settings)))
    ws.use_raw_frames(app)
    return app


def build_service(settings: Settings, storage: DataDriver, auth: Authenticator,
                  metrics: Metrics | None = None, trusts: Trusts | None = None,
                  wake_notifier: Callable[[], None] | None = None) -> Service:
    """The server's Service, complete: the policy, the keys, the pipeline,
    the quotas. Raises ValueError for an unreadable policy file or a
    pipeline stage that cannot be loaded."""
    from tidings import crypto
    from tidings.api.pipeline import Pipeline

    try:
        policy = Policy.load(settings.auth.policy_file)
    except (OSError, PolicyError) as exc:
        raise ValueError(f"invalid policy file {settings.auth.policy_file} "
                         f"(auth.policy_file): {exc}") from None
    secret = settings.notifications.signing_secret or settings.auth.secret_key
    noauth_project = settings.auth.noauth_project if settings.auth.strategy == "noauth" else ""
    return Service(
        storage=storage, limits=settings.limits, policy=policy,
        # The authenticator's holder: what the lifespan loads into it, both see.
        signing_key=auth.signing_key,
        notifications=settings.notifications,
        # Without a secret, a random key (signing_notice says so, once per start).
        confirm_key=secret.encode() if secret else secrets.token_bytes(32),
        encryption_key=crypto.parse_key(settings.encryption.key),
        pipeline=Pipeline.from_settings(settings),
        wake_notifier=wake_notifier,
        quotas=Quotas(settings.quotas),
        metrics=metrics,
        default_project=noauth_project or None,
        trusts=trusts,
    )


def observability(settings: Settings, metrics: Metrics | None, storage: DataDriver,
                  default_project: str | None = None) -> tuple[Any, QueueSampler | None]:
    """The middleware that names, counts and logs each request (None when
    metrics and the access log are both off: requests are only named), and
    the queue depth sampler (None when off)."""
    from tidings.transport.http.access import Observe, configure_access_log

    stream = configure_access_log(settings.logging)
    observe = None
    if metrics is not None or stream is not None:
        observe = Observe(metrics, stream, settings.log_format, default_project)
    sampler = None
    if metrics is not None and settings.metrics.sample_interval > 0:
        sampler = QueueSampler(metrics, storage, settings.metrics.sample_interval,
                               settings.metrics.sample_top_queues)
    return observe, sampler


def signing_notice(settings: Settings) -> str | None:
    """What the operator should know about the confirmation URLs' key:
    logged once by the command that starts the servers, not by each worker."""
    if settings.notifications.signing_secret or settings.auth.secret_key:
        return None
    return ("notifications.signing_secret is not set: confirmation URLs are signed with a "
            "random key that lasts until the process stops (and differs between workers)")


def workers_notice(settings: Settings) -> str | None:
    """What an operator of ``serve --workers N`` on SQLite should know:
    logged once at start, as the signing notice. The processes share the
    file's one write lock (their group commits take turns) and, on the
    2-core machine of BENCHMARKS.md, two posted less than one."""
    if (settings.workers <= 1 or settings.pooling.enabled
            or not settings.storage.startswith("sqlite")):
        return None
    return (f"--workers {settings.workers} on SQLite: the processes take turns at the "
            "database's one write lock, and in BENCHMARKS.md two processes served fewer "
            "writes than one process does; one process is recommended "
            "(docs/deployment.md)")


# CPython collects its youngest generation every 700 new container objects
# by default. A server with dozens of requests in flight then collects every
# few requests and walks the live objects of all of them: 8 % of a one-message
# post. Every 10,000 objects, most of a request's objects are freed (by
# reference counting) before a collection sees them.
GC_THRESHOLDS = (10_000, 50, 100)


def settle_gc() -> None:
    """Tune the garbage collector of a serving process, once it is built:
    what exists now (modules, the app) lives as long as the process, so it
    is frozen out of every collection, and the young generation is collected
    less often (GC_THRESHOLDS). Measured: post 1 +10-15 %, the p99 of post
    10 from about 20 to about 10 ms; the ping unchanged."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def app_from_environment() -> falcon.asgi.App:
    """The app of one of several worker processes (``serve --workers N``):
    the parent hands its resolved settings down through the environment."""
    from tidings.logs import configure_logging
    from tidings.transport.http import protocol

    settings = msgspec.json.decode(os.environ[WORKER_SETTINGS_ENV], type=Settings)
    # Spawned workers start with the defaults: take the parent's settings.
    configure_logging(settings.log_level, settings.log_format)
    protocol.configure(settings.http)
    app = create_app(settings, metrics_dir=os.environ.get(WORKER_METRICS_ENV) or None)
    settle_gc()
    return app
