"""Domain errors to HTTP statuses: the one place this transport maps them."""

from __future__ import annotations

import logging
import math
from typing import Any

import falcon
import msgspec

from tidings import errors

log = logging.getLogger(__name__)

# Most specific class first: the first match wins.
STATUS_BY_ERROR: list[tuple[type[errors.TidingsError], str]] = [
    (errors.Unauthorized, falcon.HTTP_401),
    (errors.Forbidden, falcon.HTTP_403),
    (errors.QuotaExceeded, falcon.HTTP_403),
    (errors.RateLimited, falcon.HTTP_429),
    (errors.MessageIsClaimed, falcon.HTTP_403),
    (errors.ClaimNotValid, falcon.HTTP_400),
    (errors.NotFound, falcon.HTTP_404),
    (errors.Conflict, falcon.HTTP_409),
    (errors.PayloadTooLarge, falcon.HTTP_413),
    (errors.UnsupportedMediaType, falcon.HTTP_415),
    (errors.NotAcceptable, falcon.HTTP_406),
    (errors.ServiceUnavailable, falcon.HTTP_503),
    (errors.TidingsError, falcon.HTTP_400),
]


def status_of(error: errors.TidingsError) -> str:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return falcon.HTTP_400


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
