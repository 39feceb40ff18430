#!/usr/bin/env python3
"""Webhook delivery figures for one `tidings serve` process.

    .venv/bin/python scripts/bench_notify.py --messages 1000 --subscribers 3

Starts a server on SQLite in a temporary directory (loopback webhooks
allowed), one small asyncio HTTP receiver per subscriber (each its own
port, so each is its own target for the per-target limit; all in one
process apart from this one's posting), subscribes them
to one queue, posts the messages (each carrying its post time) and waits
until every subscriber has every message. Prints notifications/s,
post->receipt latency, duplicates and lost, and the server's CPU time per
notification, read from /proc/<pid>/stat: on a loaded machine the rates
move with the load, the CPU per notification much less.

The CPU of posting alone is measured first by posting the same messages to
a queue nobody subscribes to; it is shown and taken out of the per
notification figure. ``--profile FILE`` runs py-spy on the server while
notifications flow (raw format, for flame graphs or a grep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import ServerProcess  # noqa: E402 - needs the path above

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Tally:
    """What one subscriber received: message seq -> count, and latencies."""

    seqs: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    last: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    want: int = 0

    def record(self, body: bytes) -> None:
        now = time.time()
        doc = json.loads(body)["body"]
        self.seqs[doc["seq"]] += 1
        self.latencies.append(now - doc["t"])
        self.last = now
        if len(self.seqs) >= self.want:
            self.arrived.set()


class ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies, answers 204: just enough
    for the notifier's POSTs, and cheap, so the receiver is not the limit."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = content_length(self.buffer[:end])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            self.tally.record(body)
            assert self.transport is not None
            self.transport.write(NO_CONTENT)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def post_all(url: str, hdrs: dict[str, str], queue: str, count: int, per_post: int,
                   concurrency: int) -> float:
    """Posts ``count`` messages carrying their seq and post time; returns
    the time of the first post."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers=hdrs, timeout=60) as client:
        async def one(start: int) -> None:
            async with gate:
                now = time.time()
                messages = [{"body": {"seq": start + i, "t": now}, "ttl": 600}
                            for i in range(min(per_post, count - start))]
                response = await client.post(f"/v2/queues/{queue}/messages",
                                             json={"messages": messages})
                response.raise_for_status()

        first = time.time()
        await asyncio.gather(*(one(s) for s in range(0, count, per_post)))
        return first


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


async def receive(conn: Connection, subscribers: int, want: int, timeout: float,
                  settle: float) -> None:
    """The receivers' side: listens, sends its ports, and once every
    subscriber has ``want`` messages (or ``timeout``) and ``settle`` more
    seconds passed, sends what arrived."""
    loop = asyncio.get_running_loop()
    tallies = [Tally(want=want) for _ in range(subscribers)]
    servers = [await loop.create_server(lambda t=t: ReceiverProtocol(t), "127.0.0.1", 0)
               for t in tallies]
    conn.send([server.sockets[0].getsockname()[1] for server in servers])
    try:
        await asyncio.wait_for(asyncio.gather(*(t.arrived.wait() for t in tallies)), timeout)
    except TimeoutError:
        pass
    await asyncio.sleep(settle)  # late duplicates would show up here
    for server in servers:
        server.close()
    conn.send([(dict(t.seqs), t.latencies, t.last) for t in tallies])


def receiver_process(conn: Connection, subscribers: int, want: int, timeout: float,
                     settle: float) -> None:
    asyncio.run(receive(conn, subscribers, want, timeout, settle))


async def run(args: argparse.Namespace, proc: ServerProcess) -> dict[str, float]:
    assert proc.process is not None
    pid = proc.process.pid
    hdrs = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench"}

    # The cost of posting alone: the same posts to a queue with no subscriber.
    before = cpu_seconds(pid)
    await post_all(proc.url, hdrs, "unwatched", args.messages, args.per_post, args.concurrency)
    posting_cpu = cpu_seconds(pid) - before

    # The receivers get a process of their own: sharing this one's CPU with
    # the posts, they were what limited the rate.
    ours, theirs = multiprocessing.Pipe()
    receivers = multiprocessing.get_context("spawn").Process(
        target=receiver_process,
        args=(theirs, args.subscribers, args.messages, args.timeout, args.settle))
    receivers.start()
    ports = ours.recv()
    async with httpx.AsyncClient(base_url=proc.url, headers=hdrs, timeout=30) as client:
        for port in ports:
            response = await client.post("/v2/queues/bench/subscriptions", json={
                "subscriber": f"http://127.0.0.1:{port}/hook", "ttl": 3600, "options": {}})
            response.raise_for_status()

    profiler = None
    if args.profile:
        profiler = subprocess.Popen(
            [shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(pid),
             "-f", "raw", "--nonblocking", "-r", "200", "-d", str(args.profile_seconds),
             "-o", args.profile], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = cpu_seconds(pid)
    first = await post_all(proc.url, hdrs, "bench", args.messages, args.per_post, args.concurrency)
    results = await asyncio.get_running_loop().run_in_executor(None, ours.recv)
    cpu = cpu_seconds(pid) - before
    receivers.join()
    if profiler is not None:
        profiler.wait()

    received = sum(sum(seqs.values()) for seqs, _, _ in results)
    distinct = sum(len(seqs) for seqs, _, _ in results)
    latencies = [x for _, lat, _ in results for x in lat]
    last = max(t for _, _, t in results) or time.time()
    return {
        "notifications": received,
        "seconds": last - first,
        "rate": distinct / (last - first),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "server_cpu_s": cpu,
        "posting_cpu_s": posting_cpu,
        "cpu_ms_per_notification": (cpu - posting_cpu) * 1000 / max(distinct, 1),
        "duplicates": received - distinct,
        "lost": args.messages * args.subscribers - distinct,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=3)
    parser.add_argument("--per-post", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="posts in flight")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for every notification")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds to keep listening after the last one (duplicates)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra server setting, e.g. NOTIFICATIONS__MAX_IN_FLIGHT=128")
    parser.add_argument("--profile", help="py-spy raw output file")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    env = {"TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
           "TIDINGS_LOG_LEVEL": "warning"}
    for item in args.set:
        name, _, value = item.partition("=")
        env[f"TIDINGS_{name.upper()}"] = value
    with tempfile.TemporaryDirectory(prefix="tidings-notify-bench-") as tmp:
        proc = ServerProcess(storage=f"sqlite:///{tmp}/tidings.db", env=env,
                             log_path=Path(tmp) / "server.log").start()
        try:
            figures = asyncio.run(run(args, proc))
        finally:
            proc.stop()
            log = (Path(tmp) / "server.log").read_text(errors="replace")
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.messages} messages x {args.subscribers} subscribers: "
          f"{figures['rate']:.0f} notifications/s "
          f"(last receipt {figures['seconds']:.2f}s after the first post)")
    print(f"latency post->receipt: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms")
    print(f"server CPU: {figures['cpu_ms_per_notification']:.3f} ms per notification "
          f"({figures['server_cpu_s']:.2f}s in all, of which posting "
          f"{figures['posting_cpu_s']:.2f}s)")
    print(f"duplicates {figures['duplicates']}, lost {figures['lost']}")
    if figures["lost"] and log.strip():
        print("server log (tail):\n" + "\n".join(log.splitlines()[-20:]))


if __name__ == "__main__":
    main()
