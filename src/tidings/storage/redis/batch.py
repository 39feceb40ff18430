"""Auto-pipelining: the scripts issued in one event-loop tick, one write.

A profile of one server process posting to a single Redis (BENCHMARKS.md,
"Redis one process: profile and changes") spent a sixth of its time in
the socket write of each EVALSHA, and more in redis-py's per-command
pool checkout, packing and reply parsing. Concurrent requests each run
their script in the same tick of the event loop, so the batcher queues
them and, at the start of the next tick, sends them all as one pipeline
on one pooled connection: one write, one read of the replies (which
Redis also answers with one write), one checkout.

Only on a single server without ``?replicas=N`` (driver.py decides):

- A pipeline there is sent once, as a single command is (no retries), so
  a failed batch answers 503 to each of its requests and never posts
  twice.
- Redis Cluster keeps redis-py's per-command routing and retries, with
  the deadline and request tokens docs/storage.md describes.
- ``?replicas=N`` WAITs after each script on the script's own connection.

The deadline is the batch's: it is cut at socket_timeout, and every
request waiting in it gets its reply or the batch's failure by then (so
``RedisDriver.run`` adds no timer of its own). The batch is packed by
hiredis and its replies read off one pooled connection, not through
redis-py's Pipeline, whose Python encoding of each argument and timer per
reply cost more than the rest of a post's driver work ("Redis: the
pipeline packed by hiredis" in BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from hiredis import pack_command
from redis.exceptions import NoScriptError, ResponseError

from tidings.storage.redis.scripts import Script

# One queued script call: what to run and who waits for its reply.
_Call = tuple[Script, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Runs scripts for many callers, one pipeline per event-loop tick."""

    def __init__(self, client: Callable[[], Any], timeout: float) -> None:
        # A callable: the driver's client is made at open() and dropped at close().
        self._client = client
        self._timeout = timeout
        self._pending: list[_Call] = []
        self._scheduled = False
        # The batches in flight: the loop holds tasks weakly.
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """The script's reply, run in the next pipeline this process sends."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, reply))
        if not self._scheduled:
            # call_soon runs after every callback already ready in this tick:
            # the other requests woken with this one queue their scripts first.
            self._scheduled = True
            loop.call_soon(self._flush)
        return await reply

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._pipeline(batch)
        except asyncio.CancelledError:
            for *_, reply in batch:
                reply.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - every waiter gets it, as its own call would
            for *_, reply in batch:
                if not reply.done():
                    reply.set_exception(exc)
            return
        for (*_, reply), result in zip(batch, replies):
            if reply.done():  # its caller gave up at the deadline
                continue
            if isinstance(result, BaseException):
                reply.set_exception(result)
            else:
                reply.set_result(result)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        """EVALSHA each, then EVAL the source of those the server lacked
        (a NOSCRIPT reply means the script did not run: no double run).

        Written on a pooled connection rather than through redis-py's
        Pipeline: its per-argument encoding and per-reply read timers were
        most of the driver's CPU per post (BENCHMARKS.md, "Redis: the
        pipeline packed by hiredis"); the batch has its own deadline."""
        pool = self._client().connection_pool
        connection = await pool.get_connection()
        try:
            replies = await _exchange(connection, [
                ("EVALSHA", script.sha, len(keys), *keys, *args)
                for script, keys, args, _ in batch])
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                again = await _exchange(connection, [
                    ("EVAL", batch[i][0].source, len(batch[i][1]), *batch[i][1], *batch[i][2])
                    for i in missing])
                for i, result in zip(missing, again):
                    replies[i] = result
        except BaseException:
            # Cut short (a deadline, a cancel, a broken socket): replies may
            # be left unread on it, so the connection is never used again.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        return replies

    async def close(self) -> None:
        """Cancel the batches in flight (their callers see the cancel)."""
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


async def _exchange(connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send the commands in one write and read their replies in order; an
    error reply is returned in its command's place, as a pipeline does."""
    await connection.send_packed_command([pack_command(c) for c in commands],
                                         check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            # No timer per reply: the batch's deadline bounds them all.
            replies.append(await connection.read_response(timeout=math.inf))
        except ResponseError as exc:
            replies.append(exc)
    return replies
