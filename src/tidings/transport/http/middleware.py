"""Falcon middleware of every request: its request id and the rate limit.

Every response carries ``X-Request-ID``: the client's own, sanitized (at
most 64 characters of ``[A-Za-z0-9._-]``), or a new one. The id is held
in a context variable for the request's task, so every log line written
while serving the request names it (``RequestIdLogFilter`` in tidings.logs).
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

import falcon
import falcon.asgi

from tidings.api.context import Limiter
from tidings.logs import request_id

HEADER = "X-Request-ID"
MAX_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")



def sanitize(value: str | None) -> str | None:
    """The client's request id with unsafe characters dropped, cut to 64;
    None when nothing is left."""
    if not value:
        return None
    cleaned = _UNSAFE.sub("", value)[:MAX_LENGTH]
    return cleaned or None


def new_request_id() -> str:
    # Unique, not secret: a random prefix per process and a counter, so a
    # request pays for neither a UUID object (3 % of a ping) nor a
    # getrandom system call.
    return f"req-{_id_prefix}{next(_id_counter):08x}"


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count()


_id_prefix = ""
_id_counter = itertools.count()
_new_id_prefix()
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_new_id_prefix)


def name_request(req: falcon.asgi.Request) -> str:
    """Give the request its id (the client's, sanitized, or a new one) and
    make it the id of the log lines written while serving it."""
    rid = sanitize(req.get_header(HEADER)) or new_request_id()
    req.context.request_id = rid
    request_id.set(rid)
    return rid


def answer_request_id(req: falcon.asgi.Request, resp: falcon.asgi.Response) -> str:
    """Put the request's id on the response; the id."""
    rid = getattr(req.context, "request_id", None)
    if rid is None:  # process_request did not run (a failure before it)
        rid = req.context.request_id = new_request_id()
    resp.set_header(HEADER, rid)
    return rid


class RequestId:
    """Falcon middleware, first of the stack: names each request.
    (``access.Observe`` extends it with metrics and the access log, so a
    request passes through one middleware for all three.)"""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        name_request(req)

    async def process_response(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                               resource: Any, req_succeeded: bool) -> None:
        answer_request_id(req, resp)

    async def process_request_ws(self, req: falcon.asgi.Request, ws: Any) -> None:
        # One id for the socket: logs of its actions name it.
        name_request(req)


def project_of(req: falcon.asgi.Request, default: str | None = None) -> str | None:
    """The project a request acts for, as make_context settles it: the
    identity's, else X-Project-ID, else ``default`` (auth.noauth_project)."""
    identity = getattr(req.context, "identity", None)
    if identity is not None:
        return identity.project
    return req.get_header("X-Project-ID") or default


class RateLimit:
    """Falcon middleware after authentication: one token of the project's
    bucket per request (429 with Retry-After when empty). Requests naming
    no project (the version document, ping) are not counted."""

    def __init__(self, quotas: Limiter, default_project: str | None = None) -> None:
        self.quotas = quotas
        self.default_project = default_project

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        project = project_of(req, self.default_project)
        if project:
            self.quotas.take(project)
