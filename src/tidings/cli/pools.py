"""`tidings pool list|add|remove|drain`: the pools of the control store,
from the command line. ``add`` and ``remove`` are the operations of
/v2/pools (api/pools.py) run with the operator's context, so every check
of the HTTP API applies; drain.py moves queues."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any, Callable

from tidings import errors
from tidings.api import pools
from tidings.api.context import Context, Service, operator_context
from tidings.storage.pooling.control import control_from_url
from tidings.storage.pooling.drain import Drain, DrainError
from tidings.storage.pooling.driver import PooledDriver


def add_commands(commands: Any, with_config: Callable[[Any], Any], settings: Callable[..., Any]
                 ) -> None:
    group = commands.add_parser("pool", help="manage storage pools (pooling)")
    sub = group.add_subparsers(dest="pool_command", required=True)
    p = with_config(sub.add_parser("list", help="list the pools"))
    p.set_defaults(run=lambda args: _list_or_say_off(args, settings))
    p = with_config(sub.add_parser("add", help="register or replace a pool"))
    p.add_argument("name")
    p.add_argument("uri")
    p.add_argument("--weight", type=int, default=100)
    p.add_argument("--flavor")
    p.set_defaults(run=lambda args: _operate(args, settings, _add))
    p = with_config(sub.add_parser("remove", help="deregister a pool that holds no queues"))
    p.add_argument("name")
    p.set_defaults(run=lambda args: _operate(args, settings, _remove))
    p = with_config(sub.add_parser(
        "drain", help="move every queue off a pool onto the others, while servers run"))
    p.add_argument("name")
    p.add_argument("--grace", type=float,
                   help="seconds an operation may take (default: pooling.drain_grace)")
    p.add_argument("--claim-wait", type=float,
                   help="seconds to wait for a queue's claims to end "
                        "(default: pooling.drain_claim_wait)")
    p.add_argument("--batch", type=int, default=20, help="queues moved together")
    p.add_argument("--cancel", action="store_true",
                   help="let the pool take new queues again (moved queues stay moved)")
    p.set_defaults(run=lambda args: _drain(args, settings))


def _require_control_store(url: str) -> None:
    """Only `pool add` may create the control store (it registers the first
    pool); the other commands would report on an empty store made just now."""
    from tidings.startup_errors import CannotStart, missing_sqlite_file

    missing = missing_sqlite_file(url)
    if missing is not None:
        raise CannotStart(f"the pools' control store {missing} does not exist: register a "
                          "pool with `tidings pool add`, or fix pooling.control_storage")


def _operate(args: argparse.Namespace, settings: Callable[..., Any],
             action: Callable[[Context, argparse.Namespace], Awaitable[int]]) -> int:
    """Run ``action`` (an operation of api/pools.py) with the operator's
    context over the pooled storage; its refusals end the command."""
    config = settings(args)
    url = config.pooling.control_storage
    if action is not _add:
        _require_control_store(url)
    pooled = PooledDriver(control_from_url(url), sync=config.sqlite_sync,
                          dead_retention=config.dead_retention)
    ctx = operator_context(Service(storage=pooled, limits=config.limits))

    async def go() -> int:
        await pooled.open()
        try:
            return await action(ctx, args)
        except errors.TidingsError as error:
            raise SystemExit(f"tidings: {error.description}") from None
        finally:
            await pooled.close()

    return asyncio.run(go())


def _run(args: argparse.Namespace, settings: Callable[..., Any], action: Any) -> int:
    url = settings(args).pooling.control_storage
    _require_control_store(url)
    control = control_from_url(url)

    async def go() -> int:
        await control.open()
        try:
            return await action(control, args)
        finally:
            await control.close()

    return asyncio.run(go())


def _drain(args: argparse.Namespace, settings: Callable[..., Any]) -> int:
    if args.cancel:
        return _run(args, settings, _cancel_drain)
    config = settings(args)
    pooling = config.pooling
    _require_control_store(pooling.control_storage)
    pooled = PooledDriver(control_from_url(pooling.control_storage), sync=config.sqlite_sync,
                          dead_retention=config.dead_retention,
                          cache_seconds=pooling.cache_seconds, move_wait=pooling.move_wait)
    drain = Drain(pooled,
                  grace=pooling.drain_grace if args.grace is None else args.grace,
                  claim_wait=(pooling.drain_claim_wait if args.claim_wait is None
                              else args.claim_wait),
                  batch=args.batch, say=print)

    async def go() -> int:
        await pooled.open()
        try:
            report = await drain.run(args.name)
        except DrainError as exc:
            raise SystemExit(f"tidings: {exc}") from None
        finally:
            await pooled.close()
        for project, queue, why in report.left:
            print(f"left {project}/{queue} on {args.name}: {why}")
        print(f"pool {args.name} drained: {len(report.moved)} queues moved, "
              f"{len(report.left)} left")
        return 1 if report.left else 0

    return asyncio.run(go())


async def _cancel_drain(control: Any, args: argparse.Namespace) -> int:
    if await control.pool_get(args.name) is None:
        raise SystemExit(f"tidings: pool {args.name} does not exist")
    await control.pool_set_draining(args.name, False)
    print(f"pool {args.name} takes new queues again")
    return 0


def _list_or_say_off(args: argparse.Namespace, settings: Callable[..., Any]) -> int:
    """With pooling off the pools hold nothing: say so, rather than print
    an empty list that looks like a broken registry."""
    if not settings(args).pooling.enabled:
        print("pooling is off: every queue is in the storage setting; turn it on with "
              "pooling.enabled = true (TIDINGS_POOLING__ENABLED=true), see docs/pools.md")
        return 0
    return _run(args, settings, _list)


async def _list(control: Any, args: argparse.Namespace) -> int:
    pools = await control.pool_list()
    if not pools:
        print("no pools registered: add one with `tidings pool add NAME URI`")
    for pool in pools:
        state = "\tdraining" if pool.draining else ""
        print(f"{pool.name}\tweight={pool.weight}\tflavor={pool.flavor or '-'}\t{pool.uri}"
              f"{state}")
    return 0


async def _add(ctx: Context, args: argparse.Namespace) -> int:
    await pools.create(ctx, args.name, {"uri": args.uri, "weight": args.weight,
                                        "flavor": args.flavor})
    print(f"pool {args.name} registered")
    return 0


async def _remove(ctx: Context, args: argparse.Namespace) -> int:
    await pools.delete(ctx, args.name)
    print(f"pool {args.name} removed")
    return 0
