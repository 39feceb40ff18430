"""The `tidings` command: serve, notifier, gc, migrate, bench and the admin commands
(check, queues, peek, purge, redrive: tidings.admin_cli)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

import msgspec

from tidings import __version__
from tidings.config import WORKER_METRICS_ENV, WORKER_SETTINGS_ENV, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "storage": getattr(args, "storage", None),
        "workers": getattr(args, "workers", None),
    }
    if getattr(args, "ws_port", None) is not None:
        overrides["websocket"] = {"port": args.ws_port}
    try:
        return load_settings(args.config, overrides=overrides)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"tidings: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tidings.app import create_app, settle_gc
    from tidings.transport.http import protocol
    from tidings.transport.http.middleware import configure_logging

    settings = _settings(args)
    # Each log line names the request it was written for ([request id]).
    configure_logging(settings.log_level)
    protocol.configure(settings.http)
    try:
        app: Any = create_app(settings)
    except ValueError as exc:
        raise SystemExit(f"tidings: {exc}") from None
    extra: dict[str, Any] = {}
    if settings.workers > 1:
        # uvicorn's supervisor stops when a worker fails to start (storage
        # unreachable, a Redis that does not persist...) but then exits 0,
        # after several seconds. Opening the storage here first turns such a
        # failure into a plain message and a non-zero exit, and the schema
        # is created or upgraded once, before the workers open it.
        try:
            asyncio.run(_check_storage(settings))
        except Exception as exc:  # noqa: BLE001 - any failure to open is fatal here
            raise SystemExit(f"tidings: cannot open the storage: {exc}") from None
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
        log_level=settings.log_level,
        access_log=False,
        # Zaqar clients keep connections open between calls; idle ones are
        # closed after this many seconds.
        timeout_keep_alive=settings.http.keep_alive_timeout,  # type: ignore[arg-type]
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
    # Zaqar serves its WebSocket API on a port of its own; --ws-port offers
    # the same (the socket at / is on the main port in any case).
    sockets = [config.bind_socket()]
    if settings.websocket.port:
        sockets.append(_bind(settings.host, settings.websocket.port))
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        metrics_dir = None
        if settings.metrics.enabled:
            # Each worker writes its metrics here and a scrape merges them
            # (tidings.metric_snapshots); removed when the supervisor stops.
            metrics_dir = tempfile.mkdtemp(prefix="tidings-metrics-")
            os.environ[WORKER_METRICS_ENV] = metrics_dir
        try:
            Multiprocess(config, sockets=sockets).run()
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    else:
        settle_gc()
        server.run(sockets=sockets)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise SystemExit(f"tidings: cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


async def _check_storage(settings: Settings) -> None:
    from tidings.storage.registry import driver_from_url

    storage = driver_from_url(settings.storage, sync=settings.sqlite_sync)
    await storage.open()
    await storage.close()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


async def _with_storage(settings: Settings, action: str) -> int:
    from tidings.storage.pooling import build_storage

    storage = build_storage(settings)
    if action == "migrate" and hasattr(storage, "migrate_on_open"):
        # Migrating is the point, whatever the URL's migrate=false says
        # (that option is for the servers).
        storage.migrate_on_open = True
    await storage.open()  # opening upgrades the schema
    try:
        if action == "gc":
            removed = await storage.gc()
            # "removed 3 expired records (messages 2, claims 1, subscriptions 0, deliveries 0)"
            print(f"removed {removed.total} expired records ({removed})")
        else:
            print(f"storage at {settings.storage} is ready")
    finally:
        await storage.close()
    return 0


def gc(args: argparse.Namespace) -> int:
    return asyncio.run(_with_storage(_settings(args), "gc"))


def migrate(args: argparse.Namespace) -> int:
    return asyncio.run(_with_storage(_settings(args), "migrate"))


def notifier(args: argparse.Namespace) -> int:
    """Run the delivery worker alone: no HTTP, until SIGINT or SIGTERM."""
    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run_notifier(settings))
    except KeyboardInterrupt:
        pass
    return 0


async def _run_notifier(settings: Settings) -> None:
    import signal

    from tidings.notify import Notifier, sockets
    from tidings.notify.relay import Relay
    from tidings.storage.pooling import build_storage

    storage = build_storage(settings)
    await storage.open()
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
                                                 settings.storage)
        await stopped.wait()
    finally:
        await worker.stop()
        await relay.stop()
        await storage.close()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tidings", description=__doc__)
    top.add_argument("--version", action="version", version=f"tidings {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="a TOML settings file (also TIDINGS_CONFIG)")
        p.add_argument("--storage", help="storage URL, e.g. sqlite:///./data/tidings.db")
        return p

    p = with_config(commands.add_parser("serve", help="run the server"))
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8888)")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.add_argument("--ws-port", type=int,
                   help="also serve the API (WebSocket included) on this port")
    p.set_defaults(run=serve)

    p = with_config(commands.add_parser(
        "gc", help="remove expired messages, claims and subscriptions now"))
    p.set_defaults(run=gc)

    p = with_config(commands.add_parser("migrate", help="create or upgrade the storage schema"))
    p.set_defaults(run=migrate)

    p = with_config(commands.add_parser(
        "notifier", help="deliver notifications (webhook, mailto, the servers' WebSockets) "
                     "without serving HTTP"))
    p.set_defaults(run=notifier)
    from tidings.storage.pooling.cli import add_commands as pool_commands

    pool_commands(commands, with_config, _settings)
    from tidings.admin_cli import add_commands as admin_commands

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
    return args.run(args)
