"""The server's log: one format for every line, uvicorn's and the access
log's included (``log_format``).

``text``: ``2026-12-07 00:11:18,859 INFO tidings.app [req-...]: message``,
the time, level, logger, the request the line was written for (``-``
outside a request) and the message. ``json``: one object a line with the
keys ``time``, ``level``, ``logger``, ``request_id`` and ``message`` (and
``traceback`` when there is one). The access log
(tidings.transport.http.access) writes its lines itself, for speed, with
``access_prefix``/``access_record`` so they look the same.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import msgspec

# The id of the request being served (set by the HTTP middleware), for
# every log line written meanwhile.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdLogFilter(logging.Filter):
    """Gives every record ``request_id`` (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
ACCESS_LOGGER = "tidings.access"

_json = msgspec.json.Encoder()


_second: list[Any] = [None, ""]
# The last millisecond written and its text: a busy server writes several
# access lines a millisecond, and the text costs twice the comparison.
_milli: list[Any] = [None, ""]


def timestamp(seconds: float) -> str:
    """``2026-12-07 00:11:18,859``, as logging's asctime writes it (local
    time). The second's text is kept: access lines come many a second."""
    milli = int(seconds * 1000)
    if _milli[0] == milli:
        cached: str = _milli[1]
        return cached
    whole = milli // 1000
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole))]
    text = f"{_second[1]},{milli % 1000:03d}"
    _milli[:] = [milli, text]
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return _json.encode(line).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send every logger's lines (uvicorn's too: it is started with
    ``log_config=None``) to one handler on standard error, in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        # uvicorn's own handlers, had anything installed them, would write
        # a second format.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # tidings.access writes the access line; uvicorn's would repeat it.
    # ``serve`` starts uvicorn with access_log=False, but a worker of
    # ``serve --workers N`` calls this after uvicorn set that up, and so
    # wrote every request twice (logging's emit was among the top frames
    # of a worker's py-spy profile).
    logging.getLogger("uvicorn.access").propagate = False


def access_text(rid: str, fields: str, now: float) -> str:
    """An access line in the text format: ``fields`` is its message."""
    return f"{timestamp(now)} INFO {ACCESS_LOGGER} [{rid}]: {fields}"


def access_json(rid: str, fields: dict[str, Any], now: float) -> str:
    """An access line in the JSON format: the keys of every line, then ``fields``."""
    return _json.encode({"time": timestamp(now), "level": "INFO", "logger": ACCESS_LOGGER,
                         "request_id": rid, "message": "request", **fields}).decode()
