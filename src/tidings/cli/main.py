"""The `tidings` command: serve, notifier, gc, migrate, ready, bench and the admin
commands (check, queues, peek, purge, redrive: tidings.cli.admin).

Every failure is one ``tidings:`` line on standard error and a non-zero
exit, never a traceback (``--log-level debug`` adds it): settings errors
name the file, variable or flag to fix (tidings.config_checks), failures
to open the storage or the address say what to do (tidings.startup_errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

import msgspec

from tidings import __version__
from tidings.config import (
    WORKER_METRICS_ENV,
    WORKER_SETTINGS_ENV,
    Settings,
    SettingsError,
    Sources,
    load_settings_and_sources,
)
from tidings.config_checks import LOG_LEVELS
from tidings.startup_errors import CannotStart, hide_password, unexpected


class Parser(argparse.ArgumentParser):
    """argparse, whose mistakes are one ``tidings:`` line like every other
    error of the command (not a usage block)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("tidings").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"tidings: {where}{message} (see `{self.prog} --help`)\n")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "storage": getattr(args, "storage", None),
        "workers": getattr(args, "workers", None),
        "log_level": getattr(args, "log_level", None),
    }
    if getattr(args, "ws_port", None) is not None:
        overrides["websocket"] = {"port": args.ws_port}
    try:
        settings, args.sources = load_settings_and_sources(args.config, overrides=overrides)
    except SettingsError as exc:
        raise SystemExit(f"tidings: {exc}") from None
    return settings


def _sources(args: argparse.Namespace) -> Sources | None:
    return getattr(args, "sources", None)


@contextlib.contextmanager
def _quiet_unless_debug(level: str) -> Iterator[None]:
    """Drivers log their failures as they happen; before the server runs
    (and in the one-shot commands), the one ``tidings:`` line says it all.
    ``--log-level debug`` shows them."""
    if level.lower() == "debug":
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


async def _check_storage(settings: Settings, sources: Sources | None) -> None:
    from tidings.startup_errors import open_storage

    storage = await open_storage(settings, sources)
    await storage.close()


def serve(args: argparse.Namespace) -> int:
    # The settings first, then the storage: a mistake in either is answered
    # before the server's modules are imported (most of a second).
    settings = _settings(args)
    sources = _sources(args)
    # Every failure to start is one line and a non-zero exit, before the
    # server runs: uvicorn would print the traceback of a failed start-up
    # and, with several workers, exit 0 after several seconds. The schema
    # is created or upgraded here, once, before any worker opens it.
    with _quiet_unless_debug(settings.log_level):
        asyncio.run(_check_storage(settings, sources))
    sockets = [_bind(settings.host, settings.port, sources, workers=settings.workers)]
    # Zaqar serves its WebSocket API on a port of its own; --ws-port offers
    # the same (the socket at / is on the main port in any case).
    if settings.websocket.port:
        sockets.append(_bind(settings.host, settings.websocket.port, sources,
                             ("websocket", "port"), workers=settings.workers))

    import uvicorn

    from tidings.app import create_app, settle_gc, signing_notice, workers_notice
    from tidings.logs import configure_logging
    from tidings.startup_errors import describe_start
    from tidings.transport.http import protocol

    try:
        app: Any = create_app(settings)
    except ValueError as exc:
        raise CannotStart(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format)
    protocol.configure(settings.http)
    log = logging.getLogger("tidings")
    log.info("%s", describe_start(settings, sources or Sources(), __version__))
    for notice in (signing_notice(settings), workers_notice(settings)):
        if notice:
            log.info("%s", notice)  # once per start, not once per worker
    extra: dict[str, Any] = {}
    if settings.workers > 1:
        # uvicorn starts each worker from an import string, so the settings
        # travel in the environment; the app above only checked them.
        os.environ[WORKER_SETTINGS_ENV] = msgspec.json.encode(settings).decode()
        app = "tidings.app:app_from_environment"
        extra = {"factory": True, "workers": settings.workers}
    config = uvicorn.Config(
        app,
        **extra,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        # httptools with the header and body timeouts uvicorn lacks
        # (tidings.transport.http.protocol); h11 caps the headers' size only.
        http=protocol.GuardedHttpToolsProtocol if _has("httptools") else "h11",
        h11_max_incomplete_event_size=settings.http.max_header_size,
        lifespan="on",
        # uvicorn's lines go through the server's handler, in its format.
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        # Zaqar clients keep connections open between calls; idle ones are
        # closed after this many seconds.
        timeout_keep_alive=settings.http.keep_alive_timeout,  # type: ignore[arg-type]  # uvicorn takes seconds as a float too
        limit_concurrency=settings.http.limit_concurrency or None,
        # Rewriting client addresses from X-Forwarded-For costs every
        # request and nothing here reads them.
        proxy_headers=False,
        server_header=False,
        # The WebSocket API shares the port; uvicorn pings each socket and
        # closes it when the pong is late. Frames up to 16 times the API's
        # limit reach the app, which answers an oversized one with an error.
        ws="auto",
        ws_max_size=16 * settings.websocket.max_frame_size,
        ws_ping_interval=settings.websocket.ping_interval or None,
        ws_ping_timeout=settings.websocket.ping_timeout or None,
    )
    server = uvicorn.Server(config)
    if config.workers > 1:
        from tidings.cli.workers import run_workers

        metrics_dir = None
        if settings.metrics.enabled:
            # Each worker writes its metrics here and a scrape merges them
            # (tidings.metrics.snapshots); removed when the supervisor stops.
            metrics_dir = tempfile.mkdtemp(prefix="tidings-metrics-")
            os.environ[WORKER_METRICS_ENV] = metrics_dir
        try:
            run_workers(config, sockets)
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    else:
        settle_gc()
        server.run(sockets=sockets)
    return 0


def _bind(host: str, port: int, sources: Sources | None = None,
          setting: tuple[str, ...] = ("port",), workers: int = 1) -> socket.socket:
    from tidings.startup_errors import bind_failure

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_failure(exc, host, port, sources, setting) from None
    if workers > 1:
        from tidings.cli.workers import bind_shared, spreads_connections

        if spreads_connections():
            # The bind above refuses an address any other socket holds (a
            # second server started by mistake included); the workers'
            # own sockets need the address bound with SO_REUSEPORT.
            address = sock.getsockname()
            sock.close()
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                bind_shared(sock, address)
            except OSError as exc:
                sock.close()
                raise bind_failure(exc, host, port, sources, setting) from None
    sock.set_inheritable(True)
    return sock


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


async def _with_storage(settings: Settings, action: str, sources: Sources | None) -> int:
    from tidings.startup_errors import open_storage

    # Migrating is the point, whatever the URL's migrate=false says (that
    # option is for the servers); gc works on an existing database only.
    storage = await open_storage(settings, sources, must_exist=action == "gc",
                                 migrate=True if action == "migrate" else None)
    try:
        if action == "gc":
            removed = await storage.gc()
            # "removed 3 expired records (messages 2, claims 1, subscriptions 0, deliveries 0)"
            print(f"removed {removed.total} expired records ({removed})")
        else:
            print(f"storage at {hide_password(settings.storage)} is ready")
    finally:
        await storage.close()
    return 0


def gc(args: argparse.Namespace) -> int:
    return asyncio.run(_with_storage(_settings(args), "gc", _sources(args)))


def migrate(args: argparse.Namespace) -> int:
    return asyncio.run(_with_storage(_settings(args), "migrate", _sources(args)))


def notifier(args: argparse.Namespace) -> int:
    """Run the delivery worker alone: no HTTP, until SIGINT or SIGTERM."""
    from tidings.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(_run_notifier(settings, _sources(args)))
    except KeyboardInterrupt:
        pass
    return 0


async def _run_notifier(settings: Settings, sources: Sources | None) -> None:
    import signal

    from tidings.notify import Notifier, sockets
    from tidings.notify.relay import Relay
    from tidings.startup_errors import open_storage

    storage = await open_storage(settings, sources)
    # Holds no socket, but pushes to the servers' sockets and hears their acks.
    relay = Relay(storage, sockets.REGISTRY,
                  ack_timeout=settings.notifications.socket_ack_timeout)
    await relay.start()
    worker = Notifier.from_settings(storage, settings, relay=relay)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        worker.start()
        logging.getLogger("tidings.notify").info("delivering notifications from %s",
                                                 hide_password(settings.storage))
        await stopped.wait()
    finally:
        await worker.stop()
        await relay.stop()
        await storage.close()


def ready(args: argparse.Namespace) -> int:
    """Exit 0 once the configured server answers ``GET /readyz`` with 200:
    the container's healthcheck, and the systemd unit's wait for start-up."""
    import time
    import urllib.error
    import urllib.request

    settings = _settings(args)
    # A server listening on every interface answers on the loopback one.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host,
                                                                    settings.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/readyz"
    deadline = time.monotonic() + args.wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as answer:
                print(f"{url}: {answer.read().decode().strip()}")
                return 0
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode(errors="replace").strip() or f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise CannotStart(f"{url} is not ready: {reason}")
        time.sleep(0.5)


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="tidings", description=__doc__)
    top.add_argument("--version", action="version", version=f"tidings {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="a TOML settings file (also TIDINGS_CONFIG)")
        p.add_argument("--storage", help="storage URL, e.g. sqlite:///./data/tidings.db")
        p.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower,
                       help="debug, info, warning, error or critical (default info); "
                            "debug adds the traceback to an error")
        return p

    p = with_config(commands.add_parser("serve", help="run the server"))
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8888)")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.add_argument("--ws-port", type=int,
                   help="also serve the API (WebSocket included) on this port (default: none)")
    p.set_defaults(run=serve)

    p = with_config(commands.add_parser(
        "ready", help="exit 0 when the configured server answers GET /readyz (a probe)"))
    p.add_argument("--host", help="the server's address (default: host; 127.0.0.1 for 0.0.0.0)")
    p.add_argument("--port", type=int, help="the server's port (default: port, 8888)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to keep trying while it is not ready (default: 0, once)")
    p.add_argument("--timeout", type=float, default=4.0,
                   help="seconds each try may take (default: 4)")
    p.set_defaults(run=ready)

    p = with_config(commands.add_parser(
        "gc", help="remove expired messages, claims and subscriptions now"))
    p.set_defaults(run=gc)

    p = with_config(commands.add_parser("migrate", help="create or upgrade the storage schema"))
    p.set_defaults(run=migrate)

    p = with_config(commands.add_parser(
        "notifier", help="deliver notifications (webhook, mailto, the servers' WebSockets) "
                     "without serving HTTP"))
    p.set_defaults(run=notifier)
    from tidings.cli.pools import add_commands as pool_commands

    pool_commands(commands, with_config, _settings)
    from tidings.cli.admin import add_commands as admin_commands

    admin_commands(commands, with_config, _settings)

    # Listed for --help; main() hands its arguments to the bench untouched.
    commands.add_parser("bench", help="load-test a Zaqar v2 endpoint (tidings bench --help)")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from tidings.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser().parse_args(argv)
    # The servers log; the one-shot commands print their answer, and their
    # failure as one line.
    quiet = _quiet_unless_debug(_asked_level(args)) \
        if args.command not in ("serve", "notifier") else contextlib.nullcontext()
    try:
        with quiet:
            return args.run(args)
    except KeyboardInterrupt:
        return 130
    except CannotStart as exc:
        _traceback_if_debug(args)
        print(f"tidings: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (unless debug)
        _traceback_if_debug(args)
        print(f"tidings: {unexpected(exc, args.command)}", file=sys.stderr)
        return 1


def _asked_level(args: argparse.Namespace) -> str:
    """The log level asked for on the command line or in the environment
    (known before, or without, valid settings)."""
    return getattr(args, "log_level", None) or os.environ.get("TIDINGS_LOG_LEVEL", "")


def _traceback_if_debug(args: argparse.Namespace) -> None:
    if _asked_level(args).lower() == "debug":
        traceback.print_exc()
