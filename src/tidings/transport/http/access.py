"""Request metrics and the access log (one line per request), and ``GET /metrics``.

``Observe`` is the first Falcon middleware of the stack, ``RequestId``
extended: it names the request, notes when it starts and, once answered,
counts it by method, route template (``unmatched`` when no route took it:
bounded labels) and status, and writes one access-log line: request id,
method, path, route, status, duration and project. Never a body, a query
string or a header value besides those: message bodies and claim ids stay
out of the logs. One middleware rather than three: Falcon awaits each
middleware method of each request.

Lines are written straight to their stream (a file opened for appending,
line-buffered, or standard error), not through ``logging``: a LogRecord
costs some 20 microseconds, ten times the line itself. The lines of the
requests answered in one turn of the event loop go out in one write at
the end of that turn (one system call instead of one per request; a line
is never held longer than that). They have the server's ``log_format``
(tidings.logs): ``text``, whose message is ``key=value`` pairs, or ``json``.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any, TextIO

import falcon
import falcon.asgi
import msgspec

from tidings.api.context import Service
from tidings.config import LoggingSettings
from tidings.logs import access_json, access_text
from tidings.metrics import CONTENT_TYPE_LATEST, Metrics
from tidings.transport.http.middleware import RequestId, answer_request_id, name_request, project_of

PATH = "/metrics"
UNMATCHED = "unmatched"
MAX_FIELD = 256

def configure_access_log(settings: LoggingSettings) -> TextIO | None:
    """The stream access lines go to (open for the life of the process);
    None when the log is off."""
    if not settings.access_log:
        return None
    if settings.access_log_file:
        # Line-buffered: each line is one append, whole even with --workers N.
        return open(settings.access_log_file, "a", buffering=1, encoding="utf-8")
    return sys.stderr


_safe = re.compile(r"[A-Za-z0-9._~:/@+%=,{}-]+").fullmatch


def _quoted(text: str) -> str:
    return msgspec.json.encode(text).decode()


class Observe(RequestId):
    """Falcon middleware: the request id, request metrics (when ``metrics``)
    and the access log line (when ``stream``), ``log_format`` "text" or
    "json"."""

    def __init__(self, metrics: Metrics | None, stream: TextIO | None,
                 log_format: str = "text", default_project: str | None = None) -> None:
        self.metrics = metrics
        self.stream = stream
        self.log_format = log_format
        self.default_project = default_project
        self._lines: list[str] = []

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                              ) -> None:
        name_request(req)
        req.context.started = time.perf_counter()

    async def process_response(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                               resource: Any, req_succeeded: bool) -> None:
        rid = answer_request_id(req, resp)
        started = getattr(req.context, "started", None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        status = resp.status_code
        route = req.uri_template or UNMATCHED
        if self.metrics is not None:
            self.metrics.request(req.method, route, status, seconds)
        if self.stream is not None:
            self._log(req, rid, route, status, seconds)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        self.flush()

    def flush(self) -> None:
        """Write the lines gathered so far."""
        lines, self._lines = self._lines, []
        if not lines or self.stream is None:  # lines are only gathered with a stream
            return
        try:
            self.stream.write("".join(lines))
        except (OSError, ValueError):  # a full disk, a closed stream: never fail a request
            pass

    def _log(self, req: falcon.asgi.Request, rid: str, route: str, status: int,
             seconds: float) -> None:
        project = project_of(req, self.default_project)
        if project:
            project = project[:MAX_FIELD]
        if self.log_format == "json":
            line = access_json(rid, {
                "method": req.method, "path": req.path[:MAX_FIELD],
                "route": route, "status": status, "duration_ms": round(seconds * 1000.0, 3),
                "project": project or None,
            }, time.time())
        else:
            # The request id is sanitized, the method a token (the parser
            # refuses others), the route a template of ours and the numbers
            # numbers: only the path and project may need quoting.
            path = req.path[:MAX_FIELD]
            if not _safe(path):
                path = _quoted(path)
            if not project:
                project = "-"
            elif not _safe(project):
                project = _quoted(project)
            line = access_text(rid, f"method={req.method} path={path} route={route} "
                               f"status={status} duration_ms={seconds * 1000.0:.3f} "
                               f"project={project}", time.time())
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(line + "\n")


class MetricsEndpoint:
    """``GET /metrics``: the Prometheus text format. Needs no identifying
    headers (a Tidings extension, outside /v2)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        metrics = self.service.metrics
        if metrics is None:
            raise falcon.HTTPNotFound(title="Not found", description="Metrics are disabled.")
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = metrics.exposition()
