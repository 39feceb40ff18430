"""Admin commands of `tidings`: check, queues, peek, purge and redrive.

They open the configured storage themselves (as `tidings gc` does), not
through a running server, and never create it: a missing database is an
error naming its path, not an empty one reported empty. queues, peek,
purge and redrive run the operations of the HTTP API (api/) with the
operator's context, so the API's checks and limits apply. Queues belong
to a project, chosen as the server chooses it for a request without one:
--project, else auth.noauth_project, else "demo" (the project of the
docs' examples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tidings.config import Settings
from tidings.startup_errors import CannotStart, missing_sqlite_file, unusable_directory

if TYPE_CHECKING:
    from tidings.api.context import Context

# The project of every example in the README and docs/.
DEFAULT_PROJECT = "demo"


class CheckFailed(Exception):
    pass


def project_of(args: argparse.Namespace, settings: Settings) -> str:
    """--project, else auth.noauth_project, else DEFAULT_PROJECT."""
    return args.project or settings.auth.noauth_project or DEFAULT_PROJECT


async def _require_queue(ctx: Context, name: str) -> None:
    """A queue the command reads or empties exists: an unknown one is a
    mistake (a typo, another project), not an empty queue."""
    from tidings import errors
    from tidings.api import queues

    try:
        await queues.get(ctx, name, with_defaults=False)
    except errors.QueueDoesNotExist:
        raise CannotStart(f"queue {name} does not exist in project {ctx.project}; "
                          f"`tidings queues --project {ctx.project}` lists them") from None


def _run(settings_of: Callable[[argparse.Namespace], Settings],
         action: Callable[[Context, argparse.Namespace], Awaitable[int]]
         ) -> Callable[[argparse.Namespace], int]:
    """A command: open the storage, run ``action`` with the operator's
    context in the project of the command, close the storage; domain errors
    become a message and exit status 1."""
    from tidings import errors
    from tidings.api.context import Service, operator_context
    from tidings.startup_errors import open_storage

    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)

        async def main() -> int:
            storage = await open_storage(settings, getattr(args, "sources", None),
                                         must_exist=True, migrate=False)
            service = Service(storage=storage, limits=settings.limits)
            ctx = operator_context(service, project_of(args, settings))
            # The operations that read messages ask who reads (Client-ID).
            ctx.client_id = str(uuid.uuid4())
            try:
                return await action(ctx, args)
            finally:
                await storage.close()

        try:
            return asyncio.run(main())
        except errors.TidingsError as exc:
            raise SystemExit(f"tidings: {exc}") from None

    return command


# --- check --------------------------------------------------------------------------


def _sqlite_file(url: str) -> None:
    """A check creates nothing: the SQLite file must exist already."""
    path = missing_sqlite_file(url)
    if path is not None:
        unusable = unusable_directory(path)
        if unusable is not None:
            raise CheckFailed(f"the SQLite database {path} cannot be created: {unusable}; "
                              "fix the storage setting")
        raise CheckFailed(f"the SQLite database {path} does not exist: run `tidings migrate`")


async def _check(settings: Settings) -> list[str]:
    from tidings.startup_errors import hide_password, storage_failure
    from tidings.storage.base import Capability
    from tidings.storage.build import build_storage

    report = [f"config: valid (storage {hide_password(settings.storage)})"]
    pooled = getattr(settings, "pooling", None) is not None and settings.pooling.enabled
    scheme = urlsplit(settings.storage).scheme
    if not pooled and scheme == "sqlite":
        _sqlite_file(settings.storage)
    storage = build_storage(settings)
    storage.migrate_on_open = False  # check the schema's version, change nothing
    try:
        # Before opening, which may upgrade the schema (SQLite) or refuse it.
        status = await storage.schema_status()
    except Exception as exc:  # noqa: BLE001 - every failure to read is the answer
        raise CheckFailed(str(storage_failure(exc, settings.storage))) from None
    if status.problem is not None:
        raise CheckFailed(status.problem)
    try:
        await storage.open()
    except Exception as exc:  # noqa: BLE001 - every failure to open is the answer
        raise CheckFailed(str(storage_failure(exc, settings.storage))) from None
    try:
        if not await storage.is_alive():
            raise CheckFailed("the storage is not answering")
        report.append(f"backend: {storage.name} reachable")
        if not pooled:
            if Capability.DURABILITY not in storage.capabilities:
                raise CheckFailed(f"the {storage.name} backend does not persist data: "
                                  "messages would be lost on restart")
            report.append("persistence: on")
        report.append("schema: current")
    finally:
        await storage.close()
    return report


def check(settings_of: Callable[[argparse.Namespace], Settings]
          ) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)
        try:
            for line in asyncio.run(_check(settings)):
                print(line)
        except CheckFailed as exc:
            raise SystemExit(f"tidings: check failed: {exc}") from None
        print("ok")
        return 0

    return command


# --- queues, peek, purge, redrive ----------------------------------------------------


async def _queues(ctx: Context, args: argparse.Namespace) -> int:
    from tidings.api import queues

    rows: list[tuple[str, str, str, str, str]] = []
    marker = None
    while True:
        page = (await queues.list_queues(ctx, marker=marker, limit=ctx.limits.max_queues_per_page,
                                         detailed=None, name=None, with_count=None,
                                         metadata_filters={}))["queues"]
        for entry in page:
            counts = (await queues.stats(ctx, entry["name"]))["messages"]
            oldest = counts.get("oldest")
            age = f"{oldest['age']}s" if oldest is not None else "-"
            rows.append((entry["name"], str(counts["total"]), str(counts["free"]),
                         str(counts["claimed"]), age))
        if len(page) < ctx.limits.max_queues_per_page:
            break
        marker = page[-1]["name"]
    if not rows:
        print(f"no queues in project {ctx.project}")
        return 0
    header = ("QUEUE", "DEPTH", "FREE", "CLAIMED", "OLDEST")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


async def _peek(ctx: Context, args: argparse.Namespace) -> int:
    from tidings.api import messages

    await _require_queue(ctx, args.queue)
    page = (await messages.list_messages(
        ctx, args.queue, marker=None, limit=args.limit, echo=True, include_claimed=True,
        include_delayed=True))["messages"]
    if not page:
        print(f"queue {args.queue} has no messages")
        return 0
    for m in page:
        # A claimed message's href names its claim, as the API shows it.
        claim_id = m["href"].partition("?claim_id=")[2]
        state = f"claimed({claim_id})" if claim_id else "free"
        print(f"{m['id']}  age={m['age']}s ttl={m['ttl']}s {state}  "
              f"{json.dumps(m['body'], ensure_ascii=False, default=str)}")
    return 0


async def _purge(ctx: Context, args: argparse.Namespace) -> int:
    from tidings.api import queues

    await _require_queue(ctx, args.queue)
    total = (await queues.stats(ctx, args.queue))["messages"]["total"]
    await queues.purge(ctx, args.queue, {"resource_types": ["messages"]})
    print(f"purged {total} messages from {args.queue}")
    return 0


async def _redrive(ctx: Context, args: argparse.Namespace) -> int:
    from tidings.api import redrive

    await _require_queue(ctx, args.dlq)
    result = await redrive.redrive(ctx, args.dlq, to=args.to, limit=args.limit,
                                   target_option="--to QUEUE")
    print(f"moved {result['moved']} messages from {args.dlq} to {result['to']}")
    return 0


def add_commands(commands: Any, with_config: Callable[[argparse.ArgumentParser], Any],
                 settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    def with_project(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(p)
        p.add_argument("--project", help="the project (default: auth.noauth_project, "
                                         f"else {DEFAULT_PROJECT!r})")
        return p

    p = with_config(commands.add_parser(
        "check", help="check the config, the backend (reachable, persistent) and the schema"))
    p.set_defaults(run=check(settings_of))

    p = with_project(commands.add_parser("queues", help="list queues with depth and age"))
    p.set_defaults(run=_run(settings_of, _queues))

    p = with_project(commands.add_parser("peek", help="show a queue's first messages"))
    p.add_argument("queue")
    p.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    p.set_defaults(run=_run(settings_of, _peek))

    p = with_project(commands.add_parser("purge", help="delete every message of a queue"))
    p.add_argument("queue")
    p.set_defaults(run=_run(settings_of, _purge))

    p = with_project(commands.add_parser(
        "redrive", help="move dead-lettered messages back to a queue (docs/redrive.md)"))
    p.add_argument("dlq", help="the dead letter queue")
    p.add_argument("--to", metavar="QUEUE",
                   help="the queue to move them to (default: the one queue whose "
                        "_dead_letter_queue is DLQ)")
    p.add_argument("--limit", type=int, help="move at most this many (default: all)")
    p.set_defaults(run=_run(settings_of, _redrive))
