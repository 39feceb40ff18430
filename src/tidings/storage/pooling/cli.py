"""`tidings pool list|add|remove`: the pools of the control store, from the
command line (the same rules as /v2/pools)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Callable

from tidings.storage.pooling.control import PoolRecord, control_from_url


def add_commands(commands: Any, with_config: Callable[[Any], Any], settings: Callable[..., Any]
                 ) -> None:
    group = commands.add_parser("pool", help="manage storage pools (pooling)")
    sub = group.add_subparsers(dest="pool_command", required=True)
    p = with_config(sub.add_parser("list", help="list the pools"))
    p.set_defaults(run=lambda args: _run(args, settings, _list))
    p = with_config(sub.add_parser("add", help="register or replace a pool"))
    p.add_argument("name")
    p.add_argument("uri")
    p.add_argument("--weight", type=int, default=100)
    p.add_argument("--flavor")
    p.set_defaults(run=lambda args: _run(args, settings, _add))
    p = with_config(sub.add_parser("remove", help="deregister a pool that holds no queues"))
    p.add_argument("name")
    p.set_defaults(run=lambda args: _run(args, settings, _remove))


def _run(args: argparse.Namespace, settings: Callable[..., Any], action: Any) -> int:
    control = control_from_url(settings(args).pooling.control_storage)

    async def go() -> int:
        await control.open()
        try:
            return await action(control, args)
        finally:
            await control.close()

    return asyncio.run(go())


async def _list(control: Any, args: argparse.Namespace) -> int:
    for pool in await control.pool_list():
        print(f"{pool.name}\tweight={pool.weight}\tflavor={pool.flavor or '-'}\t{pool.uri}")
    return 0


async def _add(control: Any, args: argparse.Namespace) -> int:
    if args.weight < 0:
        raise SystemExit("tidings: --weight must be at least 0")
    await control.pool_upsert(PoolRecord(name=args.name, uri=args.uri, weight=args.weight,
                                         flavor=args.flavor))
    print(f"pool {args.name} registered")
    return 0


async def _remove(control: Any, args: argparse.Namespace) -> int:
    if await control.queues_on(args.name, limit=1):
        raise SystemExit(f"tidings: pool {args.name} holds queues; it cannot be removed")
    await control.pool_delete(args.name)
    print(f"pool {args.name} removed")
    return 0
