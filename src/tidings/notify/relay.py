"""WebSocket pushes across processes, over the storage's bus.

A socket lives in one server process; the delivery that is owed to it may
be leased by any worker (another server process, or `tidings notifier`,
which holds no socket at all). A socket id names its process (its *node*,
see sockets.py), and every process listens on its node's bus channel
(``DataDriver.listen``: Redis pub/sub, PostgreSQL LISTEN/NOTIFY,
Unix sockets between the processes on an SQLite file):

1. the worker publishes a PUSH (token, socket id, frame, its own node) on
   the holder's channel;
2. the holder writes the frame to the socket, then publishes an ACK (token,
   written or not) on the worker's channel;
3. the worker records the delivery as delivered only on an ACK that says
   written; no ACK within ``ack_timeout`` (the holder died, the bus lost a
   message) or a "not written" ACK counts as not delivered, and the worker
   retries later.

So a delivery is removed only after the process holding the socket wrote
the frame: at-least-once, as for webhooks. A lost ACK means the frame is
sent again; clients deduplicate by message id, as for any notification.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec

from tidings.notify.sockets import SocketRegistry, node_of
from tidings.storage.base import DataDriver

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "sockets."


class Push(msgspec.Struct, tag="push", array_like=True):
    token: str
    reply_to: str
    socket_id: str
    frame: Any


class Ack(msgspec.Struct, tag="ack", array_like=True):
    token: str
    written: bool


# MessagePack: bodies posted over msgpack may hold bytes, which JSON would not keep.
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Push | Ack).decode


def channel_of(node: str) -> str:
    return CHANNEL_PREFIX + node


class Relay:
    """Pushes frames to this process's sockets directly and to other
    processes' sockets over the bus; answers other processes' pushes.

    ``start()`` listens on this process's channel (without it, only local
    sockets are reached); ``stop()`` ends that.
    """

    def __init__(self, storage: DataDriver, registry: SocketRegistry, *,
                 ack_timeout: float = 5.0) -> None:
        self.storage = storage
        self.registry = registry
        self.ack_timeout = ack_timeout
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self._listening: AbstractAsyncContextManager[None] | None = None

    @property
    def node(self) -> str:
        return self.registry.node

    @property
    def listening(self) -> bool:
        return self._listening is not None

    async def start(self) -> bool:
        """Listen for pushes and acks; False (logged) when the storage has no
        bus or cannot be reached now: pushes then reach local sockets only."""
        if self._listening is not None:
            return True
        try:
            listening = self.storage.listen(channel_of(self.node), self._hear)
            await listening.__aenter__()
        except NotImplementedError:
            log.info("the %s storage has no bus: WebSocket notifications reach the sockets "
                     "of the process that sends them only", self.storage.name)
            return False
        except Exception as exc:  # noqa: BLE001 - storage down at start: local pushes still work
            log.warning("cannot listen for WebSocket pushes of other processes: %s", exc)
            return False
        self._listening = listening
        return True

    async def stop(self) -> None:
        listening, self._listening = self._listening, None
        for future in self._waiting.values():
            if not future.done():
                future.set_result(False)
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=self.ack_timeout)
        if listening is not None:
            await listening.__aexit__(None, None, None)

    # --- the sending side -------------------------------------------------

    async def push(self, socket_id: str, frame: dict[str, Any]) -> bool:
        """True once the process holding the socket wrote ``frame`` to it."""
        node = node_of(socket_id)
        if node is None or node == self.node:
            return await self.registry.push(socket_id, frame)
        if self._listening is None:
            return False  # the ACK could not be heard
        token = secrets.token_hex(8)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            heard = await self.storage.publish(
                channel_of(node), _encode(Push(token, self.node, socket_id, frame)))
            if heard == 0:
                return False  # nobody listens there: that process is gone
            async with asyncio.timeout(self.ack_timeout):
                return await future
        except TimeoutError:
            log.debug("no answer from %s for socket %s in %.1fs", node, socket_id,
                      self.ack_timeout)
            return False
        finally:
            self._waiting.pop(token, None)

    # --- the receiving side -----------------------------------------------

    def _hear(self, message: bytes) -> None:
        try:
            decoded = _decode(message)
        except msgspec.DecodeError:
            log.warning("ignoring a malformed message on the sockets channel")
            return
        if isinstance(decoded, Ack):
            future = self._waiting.get(decoded.token)
            if future is not None and not future.done():
                future.set_result(decoded.written)
            return
        task = asyncio.get_running_loop().create_task(self._answer(decoded))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, push: Push) -> None:
        written = await self.registry.push(push.socket_id, push.frame)
        try:
            await self.storage.publish(channel_of(push.reply_to),
                                       _encode(Ack(push.token, written)))
        except Exception as exc:  # noqa: BLE001 - the pusher times out and sends it again
            log.warning("could not answer a push to socket %s: %s", push.socket_id, exc)
