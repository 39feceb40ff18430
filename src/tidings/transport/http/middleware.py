"""Falcon middleware of every request: its request id and the rate limit.

Every response carries ``X-Request-ID``: the client's own, sanitized (at
most 64 characters of ``[A-Za-z0-9._-]``), or a new one. The id is held
in a context variable for the request's task, so every log line written
while serving the request names it (``RequestIdLogFilter``).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from typing import Any

import falcon
import falcon.asgi

from tidings.api.quotas import Quotas

HEADER = "X-Request-ID"
MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def sanitize(value: str | None) -> str | None:
    """The client's request id with unsafe characters dropped, cut to 64;
    None when nothing is left."""
    if not value:
        return None
    cleaned = _UNSAFE.sub("", value)[:MAX_LENGTH]
    return cleaned or None


def new_request_id() -> str:
    # 128 random bits, as a uuid4 has, without building a UUID object on
    # every request (py-spy: uuid4 was 3 % of a ping).
    return "req-" + os.urandom(16).hex()


class RequestId:
    """Falcon middleware, first of the stack: names each request."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        rid = sanitize(req.get_header(HEADER)) or new_request_id()
        req.context.request_id = rid
        request_id.set(rid)

    async def process_response(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                               resource: Any, req_succeeded: bool) -> None:
        rid = getattr(req.context, "request_id", None)
        if rid is None:  # process_request did not run (a failure before it)
            rid = req.context.request_id = new_request_id()
        resp.set_header(HEADER, rid)

    async def process_request_ws(self, req: falcon.asgi.Request, ws: Any) -> None:
        # One id for the socket: logs of its actions name it.
        rid = sanitize(req.get_header(HEADER)) or new_request_id()
        req.context.request_id = rid
        request_id.set(rid)


class RateLimit:
    """Falcon middleware after authentication: one token of the project's
    bucket per request (429 with Retry-After when empty). Requests naming
    no project (the version document, ping) are not counted."""

    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        identity = getattr(req.context, "identity", None)
        project = identity.project if identity is not None else req.get_header("X-Project-ID")
        if project:
            self.quotas.take(project)


class RequestIdLogFilter(logging.Filter):
    """Gives every record ``request_id`` (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(level: str) -> None:
    """The server's logging: each line names the request it was written for."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdLogFilter) for f in handler.filters):
            handler.addFilter(RequestIdLogFilter())
