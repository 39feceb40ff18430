#!/usr/bin/env python3
"""The Redis driver's own CPU per post, without HTTP, A against B.

    python scripts/bench_redis_driver.py <src of A> <src of B> [--rounds 3] [--posts 20000]

32 tasks of one process post one message each, concurrently, through the
driver of each source tree in turn (a fresh process per run, PYTHONPATH
set to the tree), on one private redis-server (appendonly) on a free
loopback port. CPU seconds of the process (time.process_time) per post
count, not wall time: on a shared machine the CPU a post costs is what
survives the neighbours' load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

# What each measured process runs: argv is url, posts.
CHILD = """
import asyncio, sys, time
from tidings.storage.base import NewMessage
from tidings.storage.registry import driver_from_url

async def main(url: str, total: int) -> None:
    driver = driver_from_url(url)
    await driver.open()
    message = [NewMessage(ttl=3600, delay=0, body={"x": "y" * 100})]
    client = "3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f"
    await driver.messages.post("p", "q", message, client)  # the queue exists
    left = total

    async def producer() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await driver.messages.post("p", "q", message, client)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(32)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{1e6 * cpu / total:.1f} {total / wall:.0f}")
    await driver.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--posts", type=int, default=20000)
    args = p.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--save", "", "--dir", work], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
            for r in range(args.rounds):
                for side, src in (("A", args.a), ("B", args.b)):
                    url = f"redis://127.0.0.1:{port}/0?prefix=bench{r}{side}:"
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, url, str(args.posts)], check=True,
                        capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": src}).stdout.split()
                    cpu, rate = float(out[0]), float(out[1])
                    results[side].append((cpu, rate))
                    print(f"round {r + 1} {side}: {cpu:.1f} us CPU/post, {rate:.0f} posts/s",
                          flush=True)
            for side, runs in results.items():
                cpus = sorted(c for c, _ in runs)
                print(f"{side}: median {cpus[len(cpus) // 2]:.1f} us CPU/post")
        finally:
            redis.terminate()
            redis.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
