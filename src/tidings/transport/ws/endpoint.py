"""One WebSocket connection: frames in, one reply per frame out, in order.

A request is ``{"action", "headers", "body"}``, JSON in a text frame or
msgpack in a binary frame; its reply, in the same encoding, is
``{"request": <the request>, "body": ..., "headers": {"status": N}}``.
Requests on a socket run one after another, as in Zaqar, so a client may
send several before reading and still gets its replies in order.

Nothing a client sends closes the socket: a bad frame gets an error reply.
Each write is one storage transaction, so a client that goes away while
its request runs leaves either all of it or none.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple

import falcon
import falcon.asgi
import falcon.media
import msgspec

from tidings import errors
from tidings.api.context import Service, make_context
from tidings.config import WebSocketSettings
from tidings.transport.http.errors import status_of
from tidings.transport.ws.actions import ACTIONS, NO_HEADERS, Reply, SchemaError

log = logging.getLogger(__name__)

SCHEMA_FAILED: Reply = (400, {"error": "Schema validation failed."})
NOT_A_DICT: Reply = (400, {"error": "Unexpected body type. Expected dict or dict like."})


def _no_ext(code: int, data: memoryview) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not supported")


class Codec(NamedTuple):
    name: str
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any]


JSON = Codec("text (JSON)", msgspec.json.Decoder().decode,
             lambda document: msgspec.json.encode(document).decode())
MSGPACK = Codec("binary (MessagePack)", msgspec.msgpack.Decoder(ext_hook=_no_ext).decode,
                msgspec.msgpack.Encoder().encode)


def _echo(action: Any = None, headers: Any = None, body: Any = None) -> dict[str, Any]:
    """The request as the reply repeats it; missing parts are {}."""
    return {
        "action": action,
        "body": {} if body is None else body,
        "headers": {} if headers is None else headers,
        "api": "v2",
    }


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    if value is None:  # header names are case-insensitive, as over HTTP
        lower = name.lower()
        value = next((v for k, v in headers.items()
                      if isinstance(k, str) and k.lower() == lower), None)
    if not isinstance(value, str):
        raise SchemaError(f"header {name} is missing")
    return value


def _frame_size(frame: str | bytes, cap: int) -> int:
    # A str holds at most 4 UTF-8 bytes a character: encode only when it matters.
    if isinstance(frame, str) and len(frame) * 4 > cap:
        return len(frame.encode())
    return len(frame)


class Endpoint:
    """The WebSocket API of one service; call it with each new socket."""

    def __init__(self, service: Service, settings: WebSocketSettings) -> None:
        self.service = service
        self.max_frame_size = settings.max_frame_size

    async def __call__(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                # Frames arrive undecoded: see use_raw_frames.
                frame = await ws.receive_media()
                if isinstance(frame, str):
                    await ws.send_text(await self.answer(frame, JSON))
                else:
                    await ws.send_data(await self.answer(frame, MSGPACK))
        except falcon.WebSocketDisconnected:
            pass

    async def answer(self, frame: str | bytes, codec: Codec) -> Any:
        """The encoded reply to one frame."""
        request = _echo()
        if _frame_size(frame, self.max_frame_size) > self.max_frame_size:
            status, body = 400, {"error": f"Frame too large. Max size: "
                                          f"{self.max_frame_size} bytes."}
        else:
            try:
                document = codec.decode(frame)
            except (msgspec.DecodeError, ValueError, RecursionError) as exc:
                status, body = 400, {"error": f"Can't decode {codec.name} request. "
                                              f"{type(exc).__name__}: {exc}"}
            else:
                if isinstance(document, dict):
                    request = _echo(document.get("action"), document.get("headers"),
                                    document.get("body"))
                    status, body = await self.dispatch(request)
                else:
                    status, body = NOT_A_DICT
        return codec.encode({"request": request, "body": body, "headers": {"status": status}})

    async def dispatch(self, request: dict[str, Any]) -> Reply:
        action, headers, body = request["action"], request["headers"], request["body"]
        handler = ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            return 400, {"error": f"{action} is not a valid action"}
        if not isinstance(headers, dict) or not isinstance(body, dict):
            return SCHEMA_FAILED
        try:
            ctx: Any = None
            if action not in NO_HEADERS:
                ctx = make_context(self.service, _header(headers, "X-Project-ID"),
                                   _header(headers, "Client-ID"))
            return await handler(ctx, body)
        except SchemaError:
            return SCHEMA_FAILED
        except errors.TidingsError as error:
            status = int(status_of(error).split(" ", 1)[0])
            return status, {"exception": error.description, "error": error.title}
        except Exception:
            # Never leak a trace to the client; the log has the details.
            log.exception("unexpected error in WebSocket action %s", action)
            return 500, {"exception": "The server could not complete the request.",
                         "error": "Internal server error"}


class _RawText(falcon.media.TextBaseHandlerWS):
    def serialize(self, media: object) -> str:
        return media  # type: ignore[return-value]

    def deserialize(self, payload: str) -> object:
        return payload


class _RawBinary(falcon.media.BinaryBaseHandlerWS):
    def serialize(self, media: object) -> bytes:
        return media  # type: ignore[return-value]

    def deserialize(self, payload: bytes) -> object:
        return payload


def use_raw_frames(app: falcon.asgi.App) -> None:
    """Have ``receive_media`` hand frames over undecoded (str for text,
    bytes for binary): the endpoint decodes them itself, so that a bad
    frame gets Zaqar's error reply."""
    app.ws_options.media_handlers[falcon.WebSocketPayloadType.TEXT] = _RawText()
    app.ws_options.media_handlers[falcon.WebSocketPayloadType.BINARY] = _RawBinary()
