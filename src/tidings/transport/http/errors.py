"""Domain errors to HTTP statuses: the one place this transport maps them."""

from __future__ import annotations

import logging
import math
from typing import Any

import falcon
import msgspec

from tidings import errors
from tidings.transport.status import status_code

log = logging.getLogger(__name__)

def status_of(error: errors.TidingsError) -> str:
    """Falcon's status line for ``error`` (the table is transport/status.py)."""
    return falcon.code_to_http_status(status_code(error))


def error_body(title: str, description: str | None = None) -> bytes:
    body: dict[str, Any] = {"title": title}
    if description:
        body["description"] = description
    return msgspec.json.encode(body)


async def handle_domain_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: errors.TidingsError, params: Any
) -> None:
    resp.status = status_of(error)
    if isinstance(error, errors.Unauthorized) and error.challenge:
        resp.set_header("WWW-Authenticate", error.challenge)
    if isinstance(error, errors.RateLimited):
        resp.set_header("Retry-After", str(max(1, math.ceil(error.retry_after))))
    if isinstance(error, errors.ServiceUnavailable):
        # The storage (or Keystone) failed: worth a line, with the request id.
        log.warning("%s %s answered 503 (request %s): %s", req.method, req.path,
                    _request_id(req), error.description)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body(error.title, error.description)


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any
) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error  # falcon's own 404/405/... keep their default shape
    # Never leak a trace or SQL to the client; the log has the details.
    log.exception("unexpected error on %s %s (request %s)", req.method, req.path,
                  _request_id(req))
    resp.status = falcon.HTTP_500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body("Internal server error", "The server could not complete the request.")


def _request_id(req: falcon.asgi.Request) -> str:
    return getattr(req.context, "request_id", None) or "-"
