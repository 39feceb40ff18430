"""Queue watches over Redis pub/sub.

The post script PUBLISHes on the queue's channel (``<queue base>:w``), in
the same script as the messages: a post that was acknowledged has
published. On Redis Cluster a plain PUBLISH reaches every node, so one
pub/sub connection to any node hears every queue (the price: each post is
broadcast on the cluster bus). The channel name carries the queue's hash
tag, ready for SPUBLISH should that broadcast ever matter.

Each driver holds one pub/sub connection (its own small client, opened on
the first watch) and one reader task that wakes the in-process watches of
the channel a message arrives on. A channel is subscribed while at least
one watch of this process uses it; ``__aenter__`` returns only once Redis
confirmed the SUBSCRIBE, so a post made after it is never missed.

When the pub/sub connection fails, every current watch is woken (a post
may have been missed: the caller reads again, at worst for nothing), the
connection is dropped, and the next watch opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry  # the asyncio one: the sync one warns on every connect
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidings import errors
from tidings.storage.base import Receive
from tidings.storage.common.reconnect import until_connected
from tidings.storage.common.watch import EventWatch

if TYPE_CHECKING:
    from tidings.storage.redis.core import RedisCore

log = logging.getLogger(__name__)


class _Dropped(errors.ServiceUnavailable):
    """The pub/sub connection was lost while a SUBSCRIBE awaited Redis's
    confirmation."""


class _Watch(EventWatch):
    def __init__(self, hub: WatchHub, channel: bytes) -> None:
        super().__init__()
        self.hub = hub
        self.channel = channel
        self.generation = -1

    async def __aenter__(self) -> Self:
        await self.hub.add(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.hub.remove(self)

    def hear(self, message: bytes) -> None:
        self.event.set()


class _Listening(_Watch):
    """A ``driver.listen`` subscription: hands each message to ``receive``;
    its event means the connection (and the subscription with it) is gone."""

    def __init__(self, hub: WatchHub, channel: bytes, receive: Receive) -> None:
        super().__init__(hub, channel)
        self.receive = receive

    def hear(self, message: bytes) -> None:
        try:
            self.receive(message)
        except Exception:  # one receiver's bug must not stop the reader
            log.exception("a bus receiver failed")


class WatchHub:
    """The driver's pub/sub connection and the watches that share it."""

    def __init__(self, driver: RedisCore) -> None:
        self.d = driver
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._watches: dict[bytes, set[_Watch]] = {}
        # SUBSCRIBE confirmations awaited, per channel, in the order sent.
        self._confirms: dict[bytes, collections.deque[asyncio.Future[None]]] = {}

    def watch(self, project: str, queue: str) -> _Watch:
        channel = (self.d.keys.queue(project, queue) + ":w").encode()
        return _Watch(self, channel)

    def bus_channel(self, channel: str) -> bytes:
        return f"{self.d.keys.prefix}bus:{channel}".encode()

    @contextlib.asynccontextmanager
    async def listen(self, channel: str, receive: Receive) -> AsyncIterator[None]:
        """See DataDriver.listen: subscribed when entered; after a lost
        connection a background task subscribes again until it succeeds."""
        name = self.bus_channel(channel)
        listening = _Listening(self, name, receive)
        await self.add(listening)
        keeper = asyncio.create_task(self._keep(listening), name="tidings-redis-listen")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep(self, listening: _Listening) -> None:
        async def subscribe() -> None:
            try:
                await self.add(listening)
            except errors.ServiceUnavailable:
                listening.event.clear()  # set by the failed try's drop
                raise

        try:
            while True:
                await listening.event.wait()  # set when the connection dropped
                listening.event.clear()
                await until_connected(subscribe, failures=(errors.ServiceUnavailable,),
                                      first_delay=0.05, max_delay=2.0)
        finally:
            await self.remove(listening)

    # --- the connection ---------------------------------------------------

    def _node_url(self) -> str:
        """A URL of one Cluster node, with the cluster URL's credentials."""
        nodes = self.d.client.get_primaries() or self.d.client.get_nodes()
        node = random.choice(nodes)
        parts = urlsplit(self.d.client_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@{node.host}:{node.port}" if auth else f"{node.host}:{node.port}"
        return urlunsplit((parts.scheme, netloc, "", parts.query, ""))

    async def _connect(self) -> Any:
        """The pub/sub connection of this generation, opened if needed."""
        async with self._lock:
            if self._pubsub is not None:
                return self._pubsub
            url = self._node_url() if self.d.cluster else self.d.client_url
            # No retries: a silent reconnect would lose the subscriptions
            # without telling the waiters.
            client = aioredis.Redis.from_url(
                url, retry=Retry(NoBackoff(), 0), socket_timeout=self.d.socket_timeout,
                socket_connect_timeout=self.d.connect_timeout, socket_keepalive=True,
                protocol=2,
            )
            pubsub = client.pubsub()
            try:
                await pubsub.connect()
            except BaseException:
                await pubsub.aclose()
                await client.aclose()
                raise
            self._client, self._pubsub = client, pubsub
            self._generation += 1
            self._reader = asyncio.create_task(self._read(pubsub, self._generation),
                                               name="tidings-redis-watch")
            return pubsub

    async def _read(self, pubsub: Any, generation: int) -> None:
        try:
            while True:
                reply = await pubsub.parse_response(block=True)
                if not reply:
                    continue
                kind = reply[0]
                if kind == b"message":
                    for watch in list(self._watches.get(reply[1], ())):
                        watch.hear(reply[2])
                elif kind == b"subscribe":
                    waiting = self._confirms.get(reply[1])
                    if waiting:
                        future = waiting.popleft()
                        if not waiting:
                            del self._confirms[reply[1]]
                        if not future.done():
                            future.set_result(None)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, RuntimeError) as exc:  # the connection failed
            log.warning("Redis pub/sub at %s failed: %s: %s", self.d.where,
                        type(exc).__name__, exc)
            if generation == self._generation:
                await self._drop(exc)

    async def _drop(self, exc: BaseException | None) -> None:
        """Forget the connection; wake every watch (it may have missed a
        post) and fail the SUBSCRIBEs still waiting."""
        client, pubsub, reader = self._client, self._pubsub, self._reader
        self._client = self._pubsub = self._reader = None
        self._generation += 1
        watches, self._watches = self._watches, {}
        confirms, self._confirms = self._confirms, {}
        for group in watches.values():
            for watch in group:
                watch.event.set()
        unavailable = _Dropped(
            "The Redis storage is unavailable: it cannot be reached. Try again later."
        )
        for waiting in confirms.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(unavailable)
                    future.exception()  # retrieved: no "never retrieved" noise
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        for closing in (pubsub, client):
            if closing is not None:
                try:
                    await closing.aclose()
                except (RedisError, OSError) as failure:
                    log.debug("closing the Redis pub/sub connection: %s", failure)

    # --- watches ----------------------------------------------------------

    async def add(self, watch: _Watch) -> None:
        """Subscribe ``watch``'s channel (or join its subscription); returns
        once Redis confirmed it. A connection lost while the SUBSCRIBE was
        unconfirmed (a restart, a CLIENT KILL, a Cluster node's fail-over)
        costs one more try on a new connection, not a failed request."""
        try:
            await self._add_once(watch)
        except _Dropped:
            await self._add_once(watch)

    async def _add_once(self, watch: _Watch) -> None:
        with self.d.guard():
            pubsub = await self._connect()
        watch.generation = self._generation
        group = self._watches.get(watch.channel)
        if group is not None:
            group.add(watch)
            waiting = self._confirms.get(watch.channel)
            if not waiting:
                return  # subscribed already
            future = waiting[-1]
        else:
            self._watches[watch.channel] = {watch}
            future = asyncio.get_running_loop().create_future()
            self._confirms.setdefault(watch.channel, collections.deque()).append(future)
            try:
                with self.d.guard():
                    await pubsub.execute_command("SUBSCRIBE", watch.channel)
            except BaseException:
                await self.remove(watch)
                raise
        try:
            with self.d.guard():
                await asyncio.wait_for(asyncio.shield(future), self.d.socket_timeout)
        except BaseException:
            await self.remove(watch)
            raise

    async def remove(self, watch: _Watch) -> None:
        if watch.generation != self._generation:
            return  # its connection is gone, and its subscription with it
        group = self._watches.get(watch.channel)
        if group is None or watch not in group:
            return
        group.discard(watch)
        if group:
            return
        del self._watches[watch.channel]
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            # Ordered after any SUBSCRIBE sent before it on this connection;
            # a watch made next subscribes again after it.
            await pubsub.execute_command("UNSUBSCRIBE", watch.channel)
        except (RedisError, OSError) as exc:
            if watch.generation == self._generation:
                await self._drop(exc)

    async def close(self) -> None:
        await self._drop(None)
