"""Subscription actions of the WebSocket API, and the sockets that
subscribe themselves.

``subscription_create`` without a ``subscriber`` subscribes the socket
itself: subscriber ``websocket:<socket id>``. Each new message of the queue
is then pushed to the socket as one frame (``{"ttl", "body",
"Message_Type": "Notification", "queue_name"}``, built by the delivery
worker) in the encoding of the socket's latest ``subscription_create``.
Pushes and replies go out one at a time (``SocketState.lock``). When the
socket closes, its own subscriptions are deleted.

The endpoint calls ``open_socket`` after accepting a socket, sets
``state.codec`` before answering each frame, sends through ``state.lock``
and calls ``close_socket`` at the end.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from tidings.api import subscriptions
from tidings.api.context import Context, Service
from tidings.transport.ws.actions import Body, Reply, SchemaError, _get, _int, _name, _text

log = logging.getLogger(__name__)

try:  # the delivery worker's registry of this process's sockets
    from tidings.notify import sockets as registry
except ImportError:  # pragma: no cover - the worker is optional
    registry = None  # type: ignore[assignment]  # None: the worker is not installed


class SocketState:
    """One open socket: its id, its own subscriptions, how to push to it."""

    def __init__(self, ws: Any) -> None:
        import asyncio

        # Names the process holding it, so other processes can push to it.
        self.id = registry.REGISTRY.new_socket_id() if registry is not None else uuid.uuid4().hex
        self.ws = ws
        self.lock = asyncio.Lock()
        # (encode, is_text) of the frame being answered; of the last
        # subscription_create for pushes.
        self.codec: Any = None
        self.push_codec: Any = None
        self.own: set[tuple[str, str, str]] = set()

    @property
    def subscriber(self) -> str:
        return subscriptions.WEBSOCKET_PREFIX + self.id

    async def push(self, frame: dict[str, Any]) -> None:
        codec = self.push_codec or self.codec
        if codec is None:
            raise RuntimeError("the socket never subscribed")
        data = codec.encode(frame)
        async with self.lock:
            if isinstance(data, str):
                await self.ws.send_text(data)
            else:
                await self.ws.send_data(data)


CURRENT: ContextVar[SocketState | None] = ContextVar("tidings_ws_socket", default=None)


def open_socket(ws: Any) -> SocketState:
    state = SocketState(ws)
    CURRENT.set(state)
    if registry is not None:
        registry.register(state.id, state.push)
    return state


async def close_socket(service: Service, state: SocketState) -> None:
    """Forget the socket and delete the subscriptions it made of itself."""
    if registry is not None:
        registry.unregister(state.id)
    for project, queue, subscription_id in list(state.own):
        try:
            await service.storage.subscriptions.delete(project, queue, subscription_id)
        except Exception:  # the socket is gone either way; gc removes the rest
            log.exception("could not delete the subscription %s of a closed socket",
                          subscription_id)
    state.own.clear()


# --- the actions --------------------------------------------------------------


async def subscription_create(ctx: Context, body: Body) -> Reply:
    queue = _name(body)
    state = CURRENT.get()
    document = {key: body[key] for key in ("subscriber", "ttl", "options") if key in body}
    result = await subscriptions.create(
        ctx, queue, document,
        socket_subscriber=state.subscriber if state is not None else None,
    )
    if state is not None and document.get("subscriber") is None:
        state.own.add((ctx.project, queue, result["subscription_id"]))
        state.push_codec = state.codec
    return 201, result


async def subscription_list(ctx: Context, body: Body) -> Reply:
    result = await subscriptions.list_subscriptions(
        ctx, _name(body), marker=_text(body, "marker"), limit=_int(body, "limit"))
    return 200, result


async def subscription_get(ctx: Context, body: Body) -> Reply:
    return 200, await subscriptions.get(ctx, _name(body), _name(body, "subscription_id"))


async def subscription_update(ctx: Context, body: Body) -> Reply:
    document = {key: body[key] for key in ("subscriber", "ttl", "options") if key in body}
    await subscriptions.update(ctx, _name(body), _name(body, "subscription_id"), document)
    return 204, {}


async def subscription_delete(ctx: Context, body: Body) -> Reply:
    queue, subscription_id = _name(body), _name(body, "subscription_id")
    await subscriptions.delete(ctx, queue, subscription_id)
    state = CURRENT.get()
    if state is not None:
        state.own.discard((ctx.project, queue, subscription_id))
    return 204, {}


async def subscription_confirm(ctx: Context, body: Body) -> Reply:
    confirmed = _get(body, "confirmed", bool, required=False)
    if confirmed is None:
        raise SchemaError("confirmed is required")
    await subscriptions.confirm(ctx, _name(body), _name(body, "subscription_id"),
                                {"confirmed": confirmed})
    return 204, {}


ACTIONS: dict[str, Callable[[Context, Body], Any]] = {
    "subscription_create": subscription_create,
    "subscription_list": subscription_list,
    "subscription_get": subscription_get,
    "subscription_update": subscription_update,
    "subscription_delete": subscription_delete,
    "subscription_confirm": subscription_confirm,
}
