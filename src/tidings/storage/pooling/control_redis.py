"""The control store on Redis: ``redis://host:port/db?prefix=...``.

Pools and flavors are hashes of JSON records; the catalogue is one hash
from an entry key (the JSON of ``[project, queue]``, unambiguous whatever
the names hold) to the encoded placement, with one set per pool indexing
the entries that live on it or left a copy there. Every key shares one
hash tag, and every catalogue change is a Lua script, so each
compare-and-set of the move protocol is atomic.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis

from tidings.storage.common.opened import opened
from tidings.storage.pooling.control import (
    MOVING,
    ControlDriver,
    FlavorRecord,
    Placement,
    PoolRecord,
    decode_placement,
)

DEFAULT_PREFIX = "{tidings-control}:"

# KEYS: none (every key is the prefix plus a name, in one hash slot).
# ARGV[1] is the prefix, ARGV[2] the entry key, then the script's own.
_PLACE = """
local cat = ARGV[1] .. 'catalogue'
local current = redis.call('HGET', cat, ARGV[2])
if current then return current end
if redis.call('SISMEMBER', ARGV[1] .. 'draining', ARGV[3]) == 1 then return false end
local placement = cjson.encode({ARGV[3], '', cjson.null, cjson.null})
redis.call('HSET', cat, ARGV[2], placement)
redis.call('SADD', ARGV[1] .. 'on:' .. ARGV[3], ARGV[2])
return placement
"""

_SET_STATE = """
local cat = ARGV[1] .. 'catalogue'
local raw = redis.call('HGET', cat, ARGV[2])
if not raw then return 0 end
local p = cjson.decode(raw)
if p[1] ~= ARGV[3] or p[2] ~= ARGV[4] then return 0 end
p[2] = ARGV[5]
if ARGV[6] == '' then p[3] = cjson.null else p[3] = ARGV[6] end
redis.call('HSET', cat, ARGV[2], cjson.encode(p))
return 1
"""

_FINISH_MOVE = """
local cat = ARGV[1] .. 'catalogue'
local raw = redis.call('HGET', cat, ARGV[2])
if not raw then return 0 end
local p = cjson.decode(raw)
if p[1] ~= ARGV[3] or p[2] ~= ARGV[5] or p[3] ~= ARGV[4] then return 0 end
redis.call('HSET', cat, ARGV[2], cjson.encode({ARGV[4], '', cjson.null, ARGV[3]}))
redis.call('SADD', ARGV[1] .. 'on:' .. ARGV[4], ARGV[2])
return 1
"""

_CLEAR_SOURCE = """
local cat = ARGV[1] .. 'catalogue'
local raw = redis.call('HGET', cat, ARGV[2])
if not raw then return 0 end
local p = cjson.decode(raw)
if p[4] ~= ARGV[3] then return 0 end
p[4] = cjson.null
redis.call('HSET', cat, ARGV[2], cjson.encode(p))
if p[1] ~= ARGV[3] then redis.call('SREM', ARGV[1] .. 'on:' .. ARGV[3], ARGV[2]) end
return 1
"""

_FORGET = """
local cat = ARGV[1] .. 'catalogue'
local raw = redis.call('HGET', cat, ARGV[2])
if not raw then return 0 end
local p = cjson.decode(raw)
redis.call('SREM', ARGV[1] .. 'on:' .. p[1], ARGV[2])
if p[4] ~= cjson.null then redis.call('SREM', ARGV[1] .. 'on:' .. p[4], ARGV[2]) end
redis.call('HDEL', cat, ARGV[2])
return 1
"""


def _entry(project: str, queue: str) -> str:
    return msgspec.json.encode([project, queue]).decode()


def _page(names: list[str], marker: str | None, limit: int | None) -> list[str]:
    names = sorted(n for n in names if n > (marker or ""))
    return names if limit is None else names[:limit]


class RedisControlDriver(ControlDriver):
    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisControlDriver:
        """``prefix=`` names the keys (default ``{tidings-control}:``); other
        options go to redis-py."""
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        prefix = options.pop("prefix", DEFAULT_PREFIX)
        return cls(urlunsplit(parts._replace(query=urlencode(options))), prefix=prefix)

    @property
    def client(self) -> Any:
        return opened(self._client, "control store")

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client = aioredis.from_url(self.url, decode_responses=True)
        for name, source in (("place", _PLACE), ("set_state", _SET_STATE),
                             ("finish_move", _FINISH_MOVE), ("clear_source", _CLEAR_SOURCE),
                             ("forget", _FORGET)):
            self._scripts[name] = self._client.register_script(source)
        await self._client.ping()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _key(self, name: str) -> str:
        return self.prefix + name

    async def _run(self, script: str, *args: str) -> Any:
        return await self._scripts[script](keys=[], args=[self.prefix, *args])

    # --- pools ---------------------------------------------------------------
    @staticmethod
    def _pool(raw: str, draining: bool) -> PoolRecord:
        record = msgspec.json.decode(raw)
        return PoolRecord(name=record["name"], uri=record["uri"], weight=record["weight"],
                          flavor=record["flavor"], options=record["options"],
                          draining=draining)

    async def pool_upsert(self, pool: PoolRecord) -> bool:
        record = {"name": pool.name, "uri": pool.uri, "weight": pool.weight,
                  "flavor": pool.flavor, "options": pool.options}
        added = await self.client.hset(self._key("pools"), pool.name,
                                       msgspec.json.encode(record).decode())
        return bool(added)

    async def pool_get(self, name: str) -> PoolRecord | None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self._key("pools"), name)
            pipe.sismember(self._key("draining"), name)
            raw, draining = await pipe.execute()
        return self._pool(raw, bool(draining)) if raw else None

    async def pool_list(self, *, marker: str | None = None, limit: int | None = None
                        ) -> list[PoolRecord]:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("pools"))
            pipe.smembers(self._key("draining"))
            records, draining = await pipe.execute()
        return [self._pool(records[name], name in draining)
                for name in _page(list(records), marker, limit)]

    async def pool_delete(self, name: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("pools"), name)
            pipe.srem(self._key("draining"), name)
            await pipe.execute()

    async def pool_set_draining(self, name: str, draining: bool) -> None:
        if draining:
            await self.client.sadd(self._key("draining"), name)
        else:
            await self.client.srem(self._key("draining"), name)

    # --- flavors -------------------------------------------------------------
    async def flavor_upsert(self, flavor: FlavorRecord) -> bool:
        added = await self.client.hset(self._key("flavors"), flavor.name,
                                       msgspec.json.encode(flavor.capabilities).decode())
        return bool(added)

    async def flavor_get(self, name: str) -> FlavorRecord | None:
        raw = await self.client.hget(self._key("flavors"), name)
        return FlavorRecord(name, msgspec.json.decode(raw)) if raw else None

    async def flavor_list(self, *, marker: str | None = None, limit: int | None = None
                          ) -> list[FlavorRecord]:
        records = await self.client.hgetall(self._key("flavors"))
        return [FlavorRecord(name, msgspec.json.decode(records[name]))
                for name in _page(list(records), marker, limit)]

    async def flavor_delete(self, name: str) -> None:
        await self.client.hdel(self._key("flavors"), name)

    # --- the catalogue -------------------------------------------------------
    async def lookup(self, project: str, queue: str) -> Placement | None:
        raw = await self.client.hget(self._key("catalogue"), _entry(project, queue))
        return decode_placement(raw) if raw else None

    async def place(self, project: str, queue: str, pool: str) -> Placement | None:
        raw = await self._run("place", _entry(project, queue), pool)
        return decode_placement(raw) if raw else None

    async def set_state(self, project: str, queue: str, *, pool: str, expect: str,
                        state: str, target: str | None) -> bool:
        return bool(await self._run("set_state", _entry(project, queue), pool, expect, state,
                                    target or ""))

    async def finish_move(self, project: str, queue: str, *, source: str, target: str
                          ) -> bool:
        return bool(await self._run("finish_move", _entry(project, queue), source, target,
                                    MOVING))

    async def clear_source(self, project: str, queue: str, source: str) -> None:
        await self._run("clear_source", _entry(project, queue), source)

    async def forget(self, project: str, queue: str) -> None:
        await self._run("forget", _entry(project, queue))

    async def queues_on(self, pool: str, limit: int | None = None) -> list[tuple[str, str]]:
        members = await self.client.smembers(self._key("on:" + pool))
        entries = sorted(tuple(msgspec.json.decode(m)) for m in members)
        return [(p, q) for p, q in (entries if limit is None else entries[:limit])]
