"""The Redis driver: life cycle, URL options, durability guard, health, gc.

The controllers (queues.py, messages.py, claims.py) hold one method per
operation; each is one Lua script on the queue's keys (scripts.py), so it
is atomic and needs no lock, on a single server and on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry  # the asyncio one: the sync one warns on every connect
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tidings import errors
from tidings.config import DEAD_RETENTION
from tidings.storage import base
from tidings.storage.base import Capability, Clock, system_clock
from tidings.storage.common.metadata_cache import METADATA_CHANNEL
from tidings.storage.common.opened import opened
from tidings.storage.common.url_options import UrlOptions
from tidings.storage.redis import scripts
from tidings.storage.redis.batch import ScriptBatcher
from tidings.storage.redis.keys import Keys

if TYPE_CHECKING:
    from tidings.storage.redis.claims import RedisClaims
    from tidings.storage.redis.notify import RedisDeliveries
    from tidings.storage.redis.queues import RedisQueues

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "tidings:"
DEFAULT_SOCKET_TIMEOUT = 5.0
# gc removes at most this many messages (and claims) per queue per script
# call, so no single script blocks Redis for long.
GC_BATCH = 1000
# gc and health walk the global queue set this many queues at a time.
SCAN_BATCH = 200
HEALTH_MAX_QUEUES = 1000
# What a Redis failure raises (OSError includes TimeoutError): a 503.
FAILURES = (RedisError, OSError)


class RedisDriver(base.DataDriver):
    # The controllers' own types: the driver calls their Redis-only methods.
    claims: RedisClaims
    deliveries: RedisDeliveries
    queues: RedisQueues
    name = "redis"
    # DURABILITY joins at open() when the server persists data.
    capabilities = frozenset(
        {Capability.FIFO, Capability.CLAIMS, Capability.AT_LEAST_ONCE, Capability.HIGH_THROUGHPUT}
    )

    def __init__(self, client_url: str, *, cluster: bool = False, prefix: str = DEFAULT_PREFIX,
                 unreliable: bool = False, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
                 connect_timeout: float | None = None, clock: Clock = system_clock,
                 dead_retention: float = DEAD_RETENTION, replicas: int = 0) -> None:
        from tidings.storage.redis.claims import RedisClaims
        from tidings.storage.redis.messages import RedisMessages
        from tidings.storage.redis.notify import RedisDeliveries, RedisSubscriptions
        from tidings.storage.redis.queues import RedisQueues
        from tidings.storage.redis.watch import WatchHub

        self.client_url = client_url
        self.cluster = cluster
        self.keys = Keys(prefix)
        self.unreliable = unreliable
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout or socket_timeout
        self.clock = clock
        self.dead_retention = dead_retention
        # ``?replicas=N``: every script's writes are acknowledged only once
        # N replicas of its master have them (WAIT), within a third of the
        # deadline; otherwise the request answers 503.
        self.replicas = replicas
        self.persistence: dict[str, Any] = {}
        self._client: Any = None
        # A single server's scripts share pipelines (batch.py says when not).
        self._batcher = (None if cluster or replicas
                         else ScriptBatcher(lambda: self.client, socket_timeout))
        # The bus subscription that keeps the metadata cache fresh.
        self._listening = contextlib.AsyncExitStack()
        parts = urlsplit(client_url)
        # For messages and health: never the password.
        self.where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
        self.queues, self.messages, self.claims = (RedisQueues(self), RedisMessages(self),
                                                   RedisClaims(self))
        self.subscriptions, self.deliveries = RedisSubscriptions(self), RedisDeliveries(self)
        self.watches = WatchHub(self)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = system_clock) -> RedisDriver:
        """``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, and
        ``redis+cluster://host:port`` (or ``?cluster=true``) for Redis Cluster.

        Options: ``unreliable=true`` (run on a Redis that does not persist),
        ``prefix=`` (key prefix, default ``tidings:``), ``socket_timeout=``
        and ``socket_connect_timeout=`` (seconds), ``dead_retention=``
        (seconds gc keeps dead deliveries; the dead_retention setting), ``replicas=N``
        (acknowledge a write once N replicas have it). Other options go to
        redis-py.
        """
        parts = urlsplit(url)
        scheme = parts.scheme
        cluster = scheme.endswith("+cluster")
        plain = scheme.removesuffix("+cluster")
        if plain not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {url!r}")
        options = UrlOptions(parts.query, "Redis")
        cluster = options.take_flag("cluster", False) or cluster
        unreliable = options.take_flag("unreliable", False)
        prefix = options.take_text("prefix", DEFAULT_PREFIX)
        timeout = options.take_seconds("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
        connect = options.take_seconds("socket_connect_timeout", timeout)
        retention = options.take_seconds("dead_retention", DEAD_RETENTION)
        replicas = options.take_count("replicas", 0)
        path = "" if cluster else parts.path  # a Cluster has database 0 only
        client_url = urlunsplit((plain, parts.netloc, path, urlencode(options.rest()), ""))
        return cls(client_url, cluster=cluster, prefix=prefix, unreliable=unreliable,
                   socket_timeout=timeout, connect_timeout=connect, clock=clock,
                   dead_retention=retention, replicas=replicas)

    # --- the client -------------------------------------------------------

    @property
    def client(self) -> Any:
        return opened(self._client)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn every Redis failure into ServiceUnavailable.

        ``bounded`` (and ``run``) add the deadline: a dead or hung server
        costs a call at most socket_timeout; redis-py reconnects by itself
        on the next call once Redis is back.
        """
        try:
            yield
        except errors.TidingsError:
            raise
        except FAILURES as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> errors.ServiceUnavailable:
        """What a tenant is told of a Redis failure; the details (address,
        reason) go to the log, not to tenants."""
        log.warning("Redis at %s failed: %s: %s", self.where, type(exc).__name__, exc)
        if isinstance(exc, (RedisTimeoutError, TimeoutError)):
            reason = "it did not answer in time"
        elif isinstance(exc, (RedisConnectionError, OSError)):
            reason = "it cannot be reached"
        else:
            reason = f"it refused the command: {type(exc).__name__}"
        return errors.ServiceUnavailable(
            f"The Redis storage is unavailable: {reason}. Try again later."
        )

    @asynccontextmanager
    async def bounded(self) -> AsyncIterator[None]:
        """A Redis call under ``guard`` that ends within socket_timeout,
        whatever redis-py does meanwhile.

        socket_timeout alone bounds one read, not a call: Redis Cluster's
        client retries a timed-out command, so a call to a stalled master
        lasted as long as the stall (3 s of a 3 s stall with a 1 s
        timeout, in tests/e2e/test_redis_cluster_faults.py) and then
        succeeded. The deadline covers the retries too; the copies a retry
        sends are made harmless by the scripts (a post's request token, a
        claim's id, a subscription's salt).
        """
        with self.guard():
            async with asyncio.timeout(self.socket_timeout):
                yield

    async def run(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any:
        """``bounded``, written out: every request runs a script, and its two
        generator-based context managers were a seventh of the driver's
        CPU per post (scripts/bench_redis_driver.py: 69 -> 58 us)."""
        try:
            if self._batcher is not None:
                # The batch's own deadline (socket_timeout) ends every wait
                # for its replies: no second timer per call.
                return await self._batcher.run(script, keys, args)
            async with asyncio.timeout(self.socket_timeout):
                if not self.replicas or not script.writes:
                    return await script(self.client, keys, args)
                return await self._run_replicated(script, keys, args)
        except errors.TidingsError:
            raise
        except FAILURES as exc:
            raise self._unavailable(exc) from exc

    async def _run_replicated(self, script: scripts.Script, keys: list[str], args: list[Any]
                              ) -> Any:
        """The script, then WAIT on the same connection (one pipeline): WAIT
        waits for the writes of its own connection. On Cluster, the WAIT is
        sent to the node of the script's key, so both share that node's
        connection. Fewer replicas than asked in time: 503, though the
        master has the write (a client must treat it as unknown, like any
        503)."""
        # A third of the deadline: a node that lacks the script costs two
        # rounds (EVALSHA, then the source), each with its WAIT.
        wait_ms = max(1, int(self.socket_timeout * 1000 / 3))
        target = ({"target_nodes": self.client.get_node_from_key(keys[0])}
                  if self.cluster else {})
        for send_source in (False, True):
            async with self.client.pipeline(transaction=False) as pipe:
                if send_source:
                    pipe.eval(script.source, len(keys), *keys, *args)
                else:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", self.replicas, wait_ms, **target)
                result, acknowledged = await pipe.execute(raise_on_error=False)
            if isinstance(result, NoScriptError) and not send_source:
                continue  # the node lacks the script: send its source
            if isinstance(result, BaseException):
                raise result
            if isinstance(acknowledged, BaseException):
                raise acknowledged
            if int(acknowledged) < self.replicas:
                log.warning("Redis at %s: %s of %d replicas confirmed a write in %d ms",
                            self.where, acknowledged, self.replicas, wait_ms)
                raise errors.ServiceUnavailable(
                    f"The write was not confirmed by {self.replicas} Redis replica(s) in "
                    "time; it may or may not be kept. Try again later.")
            return result
        raise AssertionError("unreachable")

    def _make_client(self) -> Any:
        common: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
            "protocol": 2,
        }
        if self.cluster:
            # Cluster keeps redis-py's own retries: they follow slot moves
            # and fail-overs. ``bounded`` cuts them at the deadline, and the
            # post script's request token makes a post sent twice store once.
            return RedisCluster.from_url(self.client_url, **common)
        # No blind retries: a retried post could post twice. A pooled
        # connection that Redis closed is detected and replaced at checkout.
        return aioredis.Redis.from_url(self.client_url, retry=Retry(NoBackoff(), 0), **common)

    # --- life cycle -------------------------------------------------------

    async def open(self) -> None:
        client = self._make_client()
        try:
            with self.guard():
                await client.ping()
                self.persistence = await self._check_persistence(client)
        except BaseException:
            await client.aclose()
            raise
        if self.persistence["persistent"]:
            self.capabilities = type(self).capabilities | {Capability.DURABILITY}
        elif not self.unreliable:
            await client.aclose()
            raise RuntimeError(
                f"The Redis server at {self.where} does not persist data "
                f"({self.persistence['detail']}): messages would be lost on restart. "
                "Turn on persistence (appendonly yes, or RDB snapshots with 'save'), "
                "or add ?unreliable=true to the storage URL to run anyway."
            )
        else:
            log.warning("Redis at %s does not persist data; running unreliable", self.where)
        self._client = client
        await self._hear_metadata_changes()

    async def _hear_metadata_changes(self) -> None:
        """Subscribe the queues' metadata cache to the other processes'
        changes. Without it (Redis refused the subscription) the cache
        still bounds staleness by time, so the driver opens anyway."""
        try:
            await self._listening.enter_async_context(
                self.listen(METADATA_CHANNEL, self.queues.heard_change))
        except errors.ServiceUnavailable:
            log.warning("Redis at %s: no subscription to metadata changes; other "
                        "processes' changes are seen within the cache's bound", self.where)

    async def _check_persistence(self, client: Any) -> dict[str, Any]:
        """Whether every (primary) server persists: AOF on, or RDB saves."""
        nodes = client.get_primaries() if self.cluster else [None]
        details = []
        persistent = True
        for node in nodes:
            target = {"target_nodes": node} if node is not None else {}
            try:
                aof = await client.execute_command("CONFIG", "GET", "appendonly", **target)
                save = await client.execute_command("CONFIG", "GET", "save", **target)
                aof_on = _config_value(aof, "appendonly") == "yes"
                save_rule = _config_value(save, "save").strip()
                ok = aof_on or bool(save_rule)
                detail = f"appendonly {'yes' if aof_on else 'no'}, save {save_rule!r}"
            except ResponseError:
                # CONFIG is often disabled on managed Redis: INFO still tells
                # whether AOF is on, though not whether RDB snapshots are.
                info = await client.execute_command("INFO", "persistence", **target)
                aof_on = str(info.get("aof_enabled", "0")) == "1"
                ok = aof_on
                detail = (
                    "CONFIG is not available and INFO shows AOF "
                    + ("on" if aof_on else "off; RDB snapshots cannot be checked")
                )
            persistent = persistent and ok
            details.append(detail if node is None else f"{node.name}: {detail}")
        return {"persistent": persistent, "detail": "; ".join(details)}

    # Redis keeps no schema: the scripts make each key as they first write
    # it, in the one layout this code reads (keys.py), so there is nothing
    # to create, upgrade or check.
    async def migrate(self) -> int:
        return 0

    async def schema_status(self) -> base.SchemaStatus:
        return base.SchemaStatus(None, None)

    async def close(self) -> None:
        await self._listening.aclose()
        await self.watches.close()
        if self._batcher is not None:
            await self._batcher.close()
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass

    async def is_alive(self) -> bool:
        try:
            async with self.bounded():
                return bool(await self.client.ping())
        except errors.ServiceUnavailable:
            return False

    async def index_queue(self, project: str, queue: str) -> None:
        """Add the queue to its project's index and to the global set.

        Always after the queue's own keys exist (those are the truth); both
        writes are idempotent, so repeating them repairs an interrupted one.
        """
        async with self.bounded():
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zadd(self.keys.project_index(project), {queue: 0})
                pipe.sadd(self.keys.all_queues, self.keys.member(project, queue))
                await pipe.execute()

    async def _queue_members(self, limit: int | None = None) -> list[str]:
        """Every queue (encoded member) in the global set, SSCAN-ed."""
        members: list[str] = []
        with self.guard():
            async for raw in self.client.sscan_iter(self.keys.all_queues, count=SCAN_BATCH):
                members.append(raw.decode())
                if limit is not None and len(members) >= limit:
                    break
        return members

    async def health(self) -> dict[str, Any]:
        alive = await self.is_alive()
        report: dict[str, Any] = {
            "storage_reachable": alive,
            "url": self.where,
            "cluster": self.cluster,
            "prefix": self.keys.prefix,
            "persistence": self.persistence,
            "replicas": self.replicas,
            "message_counts": [],
        }
        if not alive:
            return report
        now = str(self.clock())
        members = sorted(await self._queue_members(HEALTH_MAX_QUEUES))
        with self.guard():
            async with self.client.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.zcount(self.keys.queue_from_member(member) + ":e", f"({now}", "+inf")
                counts = await pipe.execute() if members else []
        for member, count in zip(members, counts):
            project, queue = Keys.names_of_member(member)
            report["message_counts"].append(
                {"project": project, "queue": queue, "messages": int(count)}
            )
        return report

    def watch(self, project: str, queue: str) -> AbstractAsyncContextManager[base.PostWatch]:
        """Redis pub/sub on the queue's channel (see watch.py)."""
        return self.watches.watch(project, queue)

    async def publish(self, channel: str, message: bytes) -> int | None:
        async with self.bounded():
            heard = await self.client.publish(self.watches.bus_channel(channel), message)
        # On a Cluster PUBLISH counts the listeners of one node only.
        return None if self.cluster else int(heard)

    def listen(self, channel: str, receive: base.Receive) -> AbstractAsyncContextManager[None]:
        """Redis pub/sub on ``<prefix>bus:<channel>`` (see watch.py)."""
        return self.watches.listen(channel, receive)

    async def stored_secret(self, name: str) -> bytes:
        """``<prefix>secret:<name>``: SET NX, then GET what won."""
        key = self.keys.secret(base.check_secret_name(name))
        with self.guard():
            await self.client.set(key, secrets.token_hex(32), nx=True)
            value = await self.client.get(key)
        if value is None:  # removed in between by hand: make it again
            return await self.stored_secret(name)
        return bytes(value)

    async def gc(self) -> base.GcResult:
        """Remove expired messages and claims of every queue, expired
        subscriptions with their deliveries, and dead deliveries older than
        ``dead_retention``.

        Each queue's expiry sets say what is due, so gc reads nothing that
        is still alive; queues go GC_BATCH messages at a time.
        """
        clock_now = self.clock()
        total = await self.deliveries.gc(clock_now, clock_now - self.dead_retention, GC_BATCH)
        now = str(clock_now)
        members = await self._queue_members()
        for start in range(0, len(members), SCAN_BATCH):
            batch = members[start:start + SCAN_BATCH]
            counts = await asyncio.gather(*(self._gc_queue(m, now) for m in batch))
            total += sum(counts, base.GcResult())
        return total

    async def _gc_queue(self, member: str, now: str) -> base.GcResult:
        queue_base = self.keys.queue_from_member(member)
        removed = base.GcResult()
        while True:
            messages, claims, more, parked = await self.run(
                scripts.gc, [queue_base], [now, GC_BATCH])
            removed += base.GcResult(messages=int(messages), claims=int(claims))
            if parked:
                # Dead-letter moves interrupted (a crash between the steps).
                project, _ = Keys.names_of_member(member)
                await self.claims.finish_dead_letters(project, queue_base)
            if not more:
                return removed


def _config_value(reply: Any, name: str) -> str:
    """A CONFIG GET reply (a dict, or a flat list) -> the value as text."""
    if isinstance(reply, dict):
        value = reply.get(name, reply.get(name.encode(), ""))
    else:
        items = list(reply or [])
        value = items[1] if len(items) > 1 else ""
    return value.decode() if isinstance(value, bytes) else str(value)
