"""Reading an HTTP request: the context headers, query values and bodies."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import msgspec

from tidings import errors
from tidings.api import validate
from tidings.api.context import Context, Service, make_context

TRUE = frozenset({"true", "True", "TRUE", "1", "yes", "on"})
FALSE = frozenset({"false", "False", "FALSE", "0", "no", "off"})
FORM_TYPE = "application/x-www-form-urlencoded"


def context(req: falcon.asgi.Request, service: Service) -> Context:
    """The request's context; ``identity`` is set by the Authenticate
    middleware when auth is on. 406 for a client that takes no JSON, as
    Zaqar answers (string checks first: nearly every client sends no
    Accept, */* or a JSON type)."""
    accept = req.get_header("Accept")
    if (accept and "json" not in accept and "*/*" not in accept
            and not req.client_accepts_json):
        raise errors.NotAcceptable(
            "Endpoint only serves `application/json`; specify client-side media type "
            "support with the \"Accept\" header.")
    return make_context(service, req.get_header("X-Project-ID"), req.get_header("Client-ID"),
                        getattr(req.context, "identity", None), req.get_header("X-Auth-Token"))


def int_param(req: falcon.asgi.Request, name: str) -> int | None:
    value = req.params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        value = value[-1]
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidParameter(
            f"The value of the {name!r} parameter is invalid: it must be an integer."
        ) from None


def bool_param(req: falcon.asgi.Request, name: str, default: bool | None = False
               ) -> bool | None:
    value = req.params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, list):
        value = value[-1]
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise errors.InvalidParameter(
        f"The value of the {name!r} parameter is invalid: it must be true or false."
    )


def str_param(req: falcon.asgi.Request, name: str) -> str | None:
    value = req.params.get(name)
    if isinstance(value, list):
        value = value[-1]
    return value or None


def list_param(req: falcon.asgi.Request, name: str) -> list[str] | None:
    value = req.params.get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return [part for item in values for part in item.split(",") if part]


async def read_body(req: falcon.asgi.Request, cap: int, what: str) -> tuple[Any, int]:
    """Decode a JSON body of at most ``cap`` bytes: (document, size).

    The document is None for an empty body. The size is checked against the
    declared length before reading, and while reading when none is declared.
    """
    validate.body_size(req.content_length, cap, what)
    if (req.content_type or "").strip().lower().startswith(FORM_TYPE):
        raise errors.InvalidContentType(
            "Form-encoded bodies are not accepted; send application/json."
        )
    raw = await req.stream.read(cap + 1)
    validate.body_size(len(raw), cap, what)
    if not raw.strip():
        return None, 0
    try:
        return msgspec.json.decode(raw), len(raw)
    except msgspec.DecodeError as exc:
        raise errors.InvalidBody(f"The request body is not valid JSON: {exc}.") from None
    except UnicodeDecodeError:
        raise errors.InvalidBody("The request body is not valid UTF-8.") from None
    except RecursionError:
        # msgspec gives up on very deep nesting ([[[[...]]]]): the client's fault.
        raise errors.InvalidBody("The request body is nested too deeply.") from None


def json_response(resp: falcon.asgi.Response, document: Any, status: str = falcon.HTTP_200
                  ) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(document)
