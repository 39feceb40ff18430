"""A failure to start, said in one line: what went wrong and what to fix.

Opening the storage fails deep inside a driver (redis-py, asyncpg,
sqlite3) with an exception chain whose useful sentence is at the bottom of
a long traceback. The command line prints ``tidings: <cause>: <fix>``
instead, naming the storage URL (its password hidden) and the setting that
chose it; ``--log-level debug`` adds the traceback.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tidings.config_checks import Sources

STORAGE = ("storage",)


class CannotStart(Exception):
    """A command cannot go on; the message is the one line to show."""


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s chain: usually the one that says
    what really happened (``Connection refused``)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and exc.errno in errno.errorcode:
        text = exc.strerror.lower() + (f": {exc.filename}" if exc.filename else "")
    return " ".join(text.split())  # one line, whatever the driver wrote


def _sqlite_path(url: str) -> str | None:
    try:
        from tidings.storage.sqlite.driver import SqliteDriver

        return SqliteDriver.from_url(url).path
    except (ImportError, ValueError):
        return None


def unusable_directory(path: str) -> str | None:
    """Why the directory of ``path`` cannot hold a database, if it cannot."""
    directory = Path(path).parent
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a directory"
            if parent == directory and not os.access(directory, os.W_OK):
                return f"the directory {directory} is not writable"
            break
    return None


def storage_failure(exc: BaseException, url: str, sources: Sources | None = None) -> CannotStart:
    """Why the storage at ``url`` could not be opened, and what to do."""
    shown = hide_password(url)
    fix_url = sources.how_to_set(STORAGE) if sources is not None else "--storage"
    cause = _describe(exc)
    inner = root_cause(exc)
    if inner is not exc and _describe(inner) not in cause:
        cause = f"{cause} ({_describe(inner)})"
    scheme = urlsplit(url).scheme
    if scheme.startswith("sqlite"):
        path = _sqlite_path(url) or url
        reason = unusable_directory(path) or cause
        return CannotStart(f"cannot open the SQLite database {path}: {reason}; make its "
                           f"directory exist and be writable, or change {fix_url}")
    if "does not persist" in cause or "schema" in cause:
        # The driver's own sentence already says what to do (turn on
        # persistence, run `tidings migrate`).
        return CannotStart(f"cannot use the storage {shown}: {cause}")
    return CannotStart(f"cannot open the storage {shown}: {cause}; start the server "
                       f"there or change {fix_url}")


def bind_failure(exc: OSError, host: str, port: int, sources: Sources | None = None,
                 setting: tuple[str, ...] = ("port",)) -> CannotStart:
    """Why ``host:port`` could not be listened on, and what to do;
    ``setting``: the one that chose the port (``port``, ``websocket.port``)."""
    from tidings.config_checks import FLAGS

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    port_setting = sources.how_to_set(setting) if sources is not None else FLAGS[setting]
    host_setting = sources.how_to_set(("host",)) if sources is not None else "--host"
    if exc.errno == errno.EADDRINUSE:
        return CannotStart(f"cannot listen on {address}: the address is already in use "
                           f"(another server?); stop it or choose another port with "
                           f"{port_setting}")
    if exc.errno == errno.EACCES:
        return CannotStart(f"cannot listen on {address}: permission denied (ports below "
                           f"1024 need privileges); choose another port with {port_setting}")
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(
            exc, socket.gaierror):
        return CannotStart(f"cannot listen on {address}: no such local address; "
                           f"fix {host_setting}")
    return CannotStart(f"cannot listen on {address}: {_describe(exc)}; check {host_setting} "
                       f"and {port_setting}")


def unexpected(exc: BaseException, command: str) -> str:
    """The one line for a failure nothing above foresaw."""
    return (f"{command} failed: {type(exc).__name__}: {_describe(exc)} "
            "(run with --log-level debug for the traceback)")


def describe_start(settings: Any, sources: Sources, version: str) -> str:
    """The first line a server logs: what it runs, on what, from where."""
    config = f"config file {sources.file}" if sources.file else "no config file"
    storage = (f"pooled (control {hide_password(settings.pooling.control_storage)})"
               if settings.pooling.enabled else
               f"{urlsplit(settings.storage).scheme.split('+')[0]} at "
               f"{hide_password(settings.storage)}")
    workers = settings.workers
    return (f"tidings {version} on http://{settings.host}:{settings.port}: storage {storage}, "
            f"{config}, {workers} worker{'s' if workers != 1 else ''}")


def missing_sqlite_file(url: str) -> str | None:
    """The SQLite file ``url`` names, when it does not exist (the admin
    commands must not create an empty database and report it empty)."""
    if not urlsplit(url).scheme.startswith("sqlite"):
        return None
    path = _sqlite_path(url)
    if path is None or path == ":memory:" or Path(path).exists():
        return None
    return path


def _missing_sqlite_file(settings: Any) -> str | None:
    return None if settings.pooling.enabled else missing_sqlite_file(settings.storage)


async def open_storage(settings: Any, sources: Sources | None = None, *,
                       must_exist: bool = False, migrate: bool | None = None) -> Any:
    """The settings' storage, opened; every failure is a ``CannotStart``.
    ``must_exist``: a missing SQLite file is an error, not a new database.
    ``migrate``: overrides the URL's migrate option (``migrate_on_open``);
    True migrates with the driver's ``migrate()`` before opening."""
    from tidings.storage.build import build_storage

    how = sources.how_to_set(STORAGE) if sources is not None else "--storage"
    if must_exist:
        missing = _missing_sqlite_file(settings)
        if missing is not None:
            raise CannotStart(f"the SQLite database {missing} does not exist: run "
                              f"`tidings migrate`, or point {how} at the database")
    try:
        storage = build_storage(settings)
    except ValueError as exc:
        raise CannotStart(f"invalid storage URL {hide_password(settings.storage)}: "
                          f"{_describe(exc)}; fix {how}") from None
    if migrate is not None:
        # Once migrate() has run there is nothing left for open() to upgrade.
        storage.migrate_on_open = False
    try:
        if migrate:
            await storage.migrate()
        await storage.open()
    except Exception as exc:  # noqa: BLE001 - every failure to open is explained
        url = settings.pooling.control_storage if settings.pooling.enabled else settings.storage
        raise storage_failure(exc, url, sources) from exc
    return storage
