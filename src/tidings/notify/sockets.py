"""The open WebSockets of this process that subscribed to queues.

A subscription made over the WebSocket API without a subscriber has the
subscriber ``websocket:<socket id>``; the worker pushes its notifications
through this registry. The endpoint registers a socket with a ``send``
callable that encodes one frame in the encoding the socket subscribed with
and writes it (serialized with the socket's replies: the endpoint owns
that), and unregisters it when the socket closes (it also deletes the
socket's subscriptions then).

A socket id starts with the id of the process that holds it
(``<node>.<random>``), so a worker anywhere knows where to send the frame:
notify/relay.py carries it there over the storage's bus. Module functions
act on one registry per process, ``REGISTRY``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

SCHEME = "websocket"
Send = Callable[[dict[str, Any]], Awaitable[None]]


def subscriber_for(socket_id: str) -> str:
    """The subscriber string of a socket's own subscriptions."""
    return f"{SCHEME}:{socket_id}"


def socket_id_of(subscriber: str) -> str | None:
    scheme, sep, rest = subscriber.partition(":")
    return rest if sep and scheme == SCHEME and rest else None


def node_of(socket_id: str) -> str | None:
    """The process holding the socket (None for an id of another form)."""
    node, sep, _ = socket_id.partition(".")
    return node if sep and node else None


class SocketRegistry:
    def __init__(self) -> None:
        self._sockets: dict[str, tuple[Send, asyncio.Lock]] = {}
        self._node: tuple[int, str] | None = None

    @property
    def node(self) -> str:
        """This process's id, made on first use: a forked child gets its own."""
        pid = os.getpid()
        if self._node is None or self._node[0] != pid:
            self._node = (pid, secrets.token_hex(8))
        return self._node[1]

    def new_socket_id(self) -> str:
        return f"{self.node}.{secrets.token_hex(12)}"

    def register(self, socket_id: str, send: Send) -> None:
        self._sockets[socket_id] = (send, asyncio.Lock())

    def unregister(self, socket_id: str) -> None:
        self._sockets.pop(socket_id, None)

    def __contains__(self, socket_id: object) -> bool:
        return socket_id in self._sockets

    def __len__(self) -> int:
        return len(self._sockets)

    async def push(self, socket_id: str, frame: dict[str, Any]) -> bool:
        """Send ``frame`` to the socket; False when this process does not
        hold it or the send failed (the socket is closing)."""
        entry = self._sockets.get(socket_id)
        if entry is None:
            return False
        send, lock = entry
        try:
            async with lock:  # one notification frame at a time per socket
                await send(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a socket that went away: retry later
            log.debug("push to socket %s failed: %r", socket_id, exc)
            return False
        return True


REGISTRY = SocketRegistry()


def register(socket_id: str, send: Send) -> None:
    REGISTRY.register(socket_id, send)


def unregister(socket_id: str) -> None:
    REGISTRY.unregister(socket_id)


async def push(socket_id: str, frame: dict[str, Any]) -> bool:
    return await REGISTRY.push(socket_id, frame)
