"""One WebSocket connection: frames in, one reply per frame out, in order.

A request is ``{"action", "headers", "body"}``, JSON in a text frame or
msgpack in a binary frame; its reply, in the same encoding, is
``{"request": <the request>, "body": ..., "headers": {"status": N}}``.
Requests on a socket run one after another, as in Zaqar, so a client may
send several before reading and still gets its replies in order.

Nothing a client sends closes the socket: a bad frame gets an error reply.
Each write is one storage transaction, so a client that goes away while
its request runs leaves either all of it or none.

Under keystone a socket starts unauthenticated: ``authenticate`` (headers
X-Auth-Token, X-Project-ID) gives it the token's identity for the actions
that follow, until the token expires; then it must authenticate again.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, cast

import falcon
import falcon.asgi
import falcon.media
import msgspec

from tidings import errors
from tidings.api.context import Service, make_context
from tidings.auth.authenticator import Authenticator
from tidings.auth.identity import Identity
from tidings.config import WebSocketSettings
from tidings.transport.status import status_code
from tidings.transport.ws import subscription_actions
from tidings.transport.ws.actions import ACTIONS, NO_HEADERS, Reply, SchemaError

log = logging.getLogger(__name__)

SCHEMA_FAILED: Reply = (400, {"error": "Schema validation failed."})
NOT_A_DICT: Reply = (400, {"error": "Unexpected body type. Expected dict or dict like."})
# Zaqar's replies (zaqar/transport/websocket/protocol.py).
NOT_AUTHENTICATED: Reply = (403, {"error": "Not authentified."})
AUTH_FAILED: Reply = (401, {"error": "Authentication failed."})
AUTH_EXPIRED: Reply = (401, {"error": "Authentication expired."})
AUTHENTICATED: Reply = (200, {"message": "Authentified."})


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


def _header(headers: dict[str, Any], name: str, required: bool = True) -> Any:
    value = headers.get(name)
    if value is None:  # header names are case-insensitive, as over HTTP
        lower = name.lower()
        value = next((v for k, v in headers.items()
                      if isinstance(k, str) and k.lower() == lower), None)
    if not isinstance(value, str) and required:
        raise SchemaError(f"header {name} is missing")
    return value


class Session:
    """One socket's authentication (keystone only): the token it
    authenticated with and that token's identity."""

    __slots__ = ("token", "identity")

    def __init__(self) -> None:
        self.token: str | None = None
        self.identity: Identity | None = None


def _frame_size(frame: str | bytes, cap: int) -> int:
    # A str holds at most 4 UTF-8 bytes a character: encode only when it matters.
    if isinstance(frame, str) and len(frame) * 4 > cap:
        return len(frame.encode())
    return len(frame)


class Endpoint:
    """The WebSocket API of one service; call it with each new socket."""

    def __init__(self, service: Service, settings: WebSocketSettings,
                 auth: Authenticator | None = None) -> None:
        self.service = service
        self.max_frame_size = settings.max_frame_size
        self.auth = auth if auth is not None and auth.enabled else None

    async def __call__(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        await ws.accept()
        session = Session()
        # Its own subscriptions and pushed notifications (subscription_actions).
        state = subscription_actions.open_socket(ws)
        try:
            while True:
                # Frames arrive undecoded: see use_raw_frames.
                # Frames arrive undecoded (use_raw_frames): text or bytes.
                frame = cast("str | bytes", await ws.receive_media())
                state.codec = JSON if isinstance(frame, str) else MSGPACK
                reply = await self.answer(frame, state.codec, session)
                async with state.lock:  # not in the middle of a pushed frame
                    if isinstance(frame, str):
                        await ws.send_text(reply)
                    else:
                        await ws.send_data(reply)
        except falcon.WebSocketDisconnected:
            pass
        finally:
            await subscription_actions.close_socket(self.service, state)

    async def answer(self, frame: str | bytes, codec: Codec, session: Session | None = None
                     ) -> Any:
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
                    status, body = await self.dispatch(request, session or Session())
                else:
                    status, body = NOT_A_DICT
        return codec.encode({"request": request, "body": body, "headers": {"status": status}})

    async def dispatch(self, request: dict[str, Any], session: Session) -> Reply:
        action, headers, body = request["action"], request["headers"], request["body"]
        handler = ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            return 400, {"error": f"{action} is not a valid action"}
        if not isinstance(headers, dict) or not isinstance(body, dict):
            return SCHEMA_FAILED
        try:
            ctx: Any = None
            if self.auth is not None:
                if action == "authenticate":
                    return await self.authenticate(headers, session)
                if session.identity is None or session.token is None:
                    return NOT_AUTHENTICATED
                if session.identity.expired(self.auth.clock()):
                    session.token = session.identity = None
                    return AUTH_EXPIRED
                try:
                    # Cached: Keystone is asked again only when the cache
                    # entry lapses, so a revoked token stops working then.
                    identity = await self.auth.for_token(session.token)
                except errors.Unauthorized:
                    session.token = session.identity = None
                    return AUTH_FAILED
                ctx = make_context(self.service, None, _header(headers, "Client-ID"), identity,
                                   session.token)
            elif action not in NO_HEADERS:
                ctx = make_context(self.service, _header(headers, "X-Project-ID"),
                                   _header(headers, "Client-ID"))
            quotas = self.service.quotas
            if ctx is not None and quotas is not None:
                quotas.take(ctx.project)  # RateLimited: 429, as over HTTP
            return await handler(ctx, body)
        except SchemaError:
            return SCHEMA_FAILED
        except errors.TidingsError as error:
            status = status_code(error)
            return status, {"exception": error.description, "error": error.title}
        except Exception:
            # Never leak a trace to the client; the log has the details.
            log.exception("unexpected error in WebSocket action %s", action)
            return 500, {"exception": "The server could not complete the request.",
                         "error": "Internal server error"}

    async def authenticate(self, headers: dict[str, Any], session: Session) -> Reply:
        """Validate X-Auth-Token; the socket takes its identity, or loses
        the one it had if the token is refused."""
        assert self.auth is not None
        session.token = session.identity = None
        token = _header(headers, "X-Auth-Token", required=False)
        if not isinstance(token, str) or not token:
            return AUTH_FAILED
        try:
            session.identity = await self.auth.for_token(token)
        except errors.Unauthorized:
            return AUTH_FAILED
        session.token = token
        return AUTHENTICATED


class _RawText(falcon.media.TextBaseHandlerWS):
    def serialize(self, media: object) -> str:
        return media  # type: ignore[return-value]  # raw frames: the media is the text itself

    def deserialize(self, payload: str) -> object:
        return payload


class _RawBinary(falcon.media.BinaryBaseHandlerWS):
    def serialize(self, media: object) -> bytes:
        return media  # type: ignore[return-value]  # raw frames: the media is the bytes themselves

    def deserialize(self, payload: bytes) -> object:
        return payload


def use_raw_frames(app: falcon.asgi.App) -> None:
    """Have ``receive_media`` hand frames over undecoded (str for text,
    bytes for binary): the endpoint decodes them itself, so that a bad
    frame gets Zaqar's error reply."""
    app.ws_options.media_handlers[falcon.WebSocketPayloadType.TEXT] = _RawText()
    app.ws_options.media_handlers[falcon.WebSocketPayloadType.BINARY] = _RawBinary()
