#!/usr/bin/env python3
"""redis-server's instructions per driver call, counted by callgrind.

    .venv/bin/python scripts/bench_redis_instructions.py <src> [<src> ...] \
        [--ops claim,bulk_delete,delete,post] [--calls 200]

For each operation and source tree: a private redis-server (no
persistence: an fsync is time, not instructions) under ``valgrind
--tool=callgrind --instr-atstart=no`` on a free loopback port; a child
process with ``PYTHONPATH=<src>`` fills a queue with 5,000 messages
through that tree's driver, turns callgrind's instrumentation on, makes
``--calls`` calls of the operation (one at a time) and turns it off. The
instructions redis-server ran meanwhile, over the calls, are printed.
Each count repeats within about 1 %, where redis-server's CPU time per
call moves by a quarter from run to run on a shared machine.

claim: a claim of ten; bulk_delete: one DELETE of a claim's ten messages
with its claim id; delete: one message with its claim id; post: one
message.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import free_port

# What the measured process runs: argv is url, operation, calls, valgrind's pid.
CHILD = """
import asyncio, subprocess, sys
from tidings.storage.base import NewMessage
from tidings.storage.registry import driver_from_url

url, op, calls, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CLIENT = "3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f"


def instrument(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", pid],
                   check=True, capture_output=True)


async def main() -> None:
    d = driver_from_url(url)
    await d.open()
    batch = [NewMessage(ttl=3600, delay=0, body={"x": "y" * 100})] * 100
    for _ in range(50):
        await d.messages.post("p", "q", batch, CLIENT)

    async def claim():
        return await d.claims.create("p", "q", ttl=300, grace=60, limit=10, dead_letter=None)

    if op == "claim":
        instrument(True)
        for _ in range(calls):
            await claim()
    elif op == "bulk_delete":
        claims = [await claim() for _ in range(calls)]
        instrument(True)
        for c in claims:
            await d.messages.bulk_delete("p", "q", [m.id for m in c.messages], [c.claim_id])
    elif op == "delete":
        claims = [await claim() for _ in range(calls // 10 + 1)]
        messages = [(m.id, c.claim_id) for c in claims for m in c.messages][:calls]
        instrument(True)
        for message_id, claim_id in messages:
            await d.messages.delete("p", "q", message_id, claim_id)
    else:
        instrument(True)
        for _ in range(calls):
            await d.messages.post("p", "q", batch[:1], CLIENT)
    instrument(False)
    await d.close()

asyncio.run(main())
"""


def wait_for_redis(port: int) -> None:
    for _ in range(200):  # valgrind starts redis-server slowly
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
        if ping.stdout.strip() == b"PONG":
            return
        time.sleep(0.1)
    raise SystemExit(f"tidings: redis-server under valgrind did not answer on {port}")


def count(src: str, op: str, calls: int) -> int:
    """Instructions redis-server ran during ``calls`` calls of ``op``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        redis = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", "redis-server", "--port", str(port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_redis(port)
            url = f"redis://127.0.0.1:{port}/0?prefix=i:&unreliable=true"
            subprocess.run([sys.executable, "-c", CHILD, url, op, str(calls), str(redis.pid)],
                           check=True, env={**os.environ, "PYTHONPATH": src},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                           capture_output=True)
            redis.wait()
        summary = subprocess.run(["callgrind_annotate", str(out)], capture_output=True,
                                 text=True, check=True).stdout
    for line in summary.splitlines():
        if "PROGRAM TOTALS" in line:
            return int(line.split()[0].replace(",", ""))
    raise SystemExit("tidings: callgrind_annotate printed no totals")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", nargs="+", help="source trees (the src/ directory of a checkout)")
    p.add_argument("--ops", default="claim,bulk_delete,delete,post")
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    for op in args.ops.split(","):
        for src in args.src:
            total = count(src, op, args.calls)
            print(f"{op:12} {src}: {total // args.calls:,} instructions a call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
