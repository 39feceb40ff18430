#!/usr/bin/env python3
"""Scale figures for Tidings on SQLite, end to end, in a few minutes.

    python scripts/bench_scale.py --out /tmp/scale.json

1. Many queues: for 1, 1,000 and 100,000 queues existing in the project
   (created in-process through the storage driver, before the server starts
   on the same file), a `tidings bench` run (ping, producer, observer,
   consumer) spread over min(N, 16) of them, and the server's VmRSS
   (from /proc/PID/status) before and after the load.
2. Deep queues: one file holding a queue of 1,000,000 messages and a queue
   of 1,000 (filled through the driver in batches of NewMessage, then the
   server is started on the file). Listing: a bench observer phase on each.
   Claiming: rounds of "claim 10 + delete each" by 8 connections until 500
   messages are taken, then the 500 are posted back, so the small queue
   always holds between 500 and 1,000 messages; rounds alternate between
   the two queues so machine noise hits both alike.
3. EXPLAIN QUERY PLAN of the claim and the listing queries on that file.

Every server is started here on a free 127.0.0.1 port with a fresh database
under a temporary directory, and stopped by its PID. Helpers (Server,
run_bench, ...) are shared with scripts/bench_matrix.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from time import perf_counter
from typing import Any

PROJECT = "bench"
REPO = Path(__file__).resolve().parent.parent


# --- servers ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tidings_command() -> list[str]:
    exe = Path(sys.executable).parent / "tidings"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tidings"]


class Server:
    """`tidings serve` on a free port; stopped by its PID (its own session,
    so with --workers N the uvicorn parent and its children go together)."""

    def __init__(self, storage: str, workers: int = 1, log_dir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.storage = storage
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = (log_dir or Path(tempfile.gettempdir())) / f"tidings-{self.port}.log"
        self.env = {**os.environ, "TIDINGS_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        cmd = [*tidings_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--storage", self.storage, "--workers", str(self.workers)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            # With several workers, wait until every one has started.
            if self._ping() and (self.workers == 1 or len(self.worker_pids()) >= self.workers):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s; see {self.log_path}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"GET /v2/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Client-ID: 3381af92-2b9e-11e3-b191-71861300734c\r\n"
                             b"X-Project-ID: bench\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 204")
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself, or uvicorn's children."""
        if self.workers == 1:
            return [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        # uvicorn's multiprocess parent also starts a resource tracker; keep servers.
        pids = []
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(child)
        return pids

    def memory(self) -> dict[str, int]:
        """VmRSS (and its anonymous and file-backed parts) in KiB, summed over
        the serving processes."""
        total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in total:
                    total[key] += int(value.split()[0])
        return total

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the bench ----------------------------------------------------------------


def run_bench(url: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """One `tidings bench --json` run in its own process; its JSON document."""
    cmd = [sys.executable, "-m", "tidings.bench", "--url", url, "--project", PROJECT,
           "--json", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout)


def machine_load() -> float:
    return os.getloadavg()[0]


# --- filling through the driver -----------------------------------------------


async def _fill(path: str, queues: list[str], messages: dict[str, int],
                body_size: int = 100) -> dict[str, float]:
    """Create queues and post messages in-process (sync=off: the server
    reopens the file with durable commits)."""
    from tidings.storage.base import NewMessage
    from tidings.storage.registry import driver_from_url

    driver = driver_from_url(f"sqlite:///{path}" if path.startswith("/") else path, sync="off")
    await driver.open()
    timings = {}
    try:
        began = perf_counter()
        for i in range(0, len(queues), 2000):
            await asyncio.gather(*(driver.queues.create(PROJECT, name, {})
                                   for name in queues[i:i + 2000]))
        timings["create_queues_s"] = round(perf_counter() - began, 2)
        body = {"event": "bench", "payload": "x" * body_size}
        client = str(uuid.uuid4())
        batch = [NewMessage(body=body, ttl=86_400)] * 10_000
        began = perf_counter()
        for name, count in messages.items():
            done = 0
            while done < count:
                n = min(len(batch), count - done)
                await driver.messages.post(PROJECT, name, batch[:n], client)
                done += n
        timings["post_messages_s"] = round(perf_counter() - began, 2)
    finally:
        await driver.close()
    return timings


def fill(path: str, queues: list[str], messages: dict[str, int] | None = None) -> dict[str, float]:
    return asyncio.run(_fill(path, queues, messages or {}))


def query_plans(path: str) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the claim and listing queries, as the driver
    runs them (listing with the default filters: not claimed, not delayed)."""
    from tidings.storage.sqlite import queries as q

    conn = sqlite3.connect(path)
    try:
        now = time.time()
        page = q.MESSAGE_PAGE.format(
            filters=q.MESSAGE_PAGE_NOT_CLAIMED + q.MESSAGE_PAGE_NOT_DELAYED)
        cases = {
            "claim (MESSAGES_CLAIMABLE)": (q.MESSAGES_CLAIMABLE, (1, now, now, now, 10)),
            "claim update (MESSAGE_CLAIM)": (q.MESSAGE_CLAIM, ("c", now, now, 1)),
            "listing (MESSAGE_PAGE)": (page, (PROJECT, "deep1m-0", 0, now, now, now, 10)),
            "delete check (MESSAGE_CLAIM_STATE)": (q.MESSAGE_CLAIM_STATE, (1, 1, now)),
            "queue id (QUEUE_ID)": (q.QUEUE_ID, (PROJECT, "deep1m-0")),
        }
        return {
            name: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
            for name, (sql, args) in cases.items()
        }
    finally:
        conn.close()


# --- the claim rounds ------------------------------------------------------------


async def _claim_rounds(url: str, queues: list[str], rounds: int, budget: int,
                        connections: int) -> dict[str, Any]:
    """Alternate rounds over ``queues``: claim 10 + delete each until
    ``budget`` messages are taken, then post them back (unmeasured)."""
    from tidings.bench import zaqar
    from tidings.bench.histogram import LatencyHistogram
    from tidings.bench.http import HttpConnection, build_request

    port = int(url.rsplit(":", 1)[1])
    host = f"127.0.0.1:{port}"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT,
               "Accept": "application/json"}
    json_headers = {**headers, "Content-Type": "application/json"}
    conns = [HttpConnection("127.0.0.1", port) for _ in range(connections)]
    for c in conns:
        await c.connect()
    results = {q: {"messages": 0, "seconds": 0.0, "claim": LatencyHistogram(),
                   "delete": LatencyHistogram(), "empty": 0, "errors": 0} for q in queues}
    refill = zaqar.post_body(10, 100, 86_400)

    async def consume(conn: HttpConnection, queue: str, left: list[int]) -> None:
        r = results[queue]
        claim = build_request("POST", zaqar.claim_path(queue, 10), host, json_headers,
                              zaqar.claim_body(300, 60))
        while left[0] > 0:
            left[0] -= 10
            t0 = perf_counter()
            resp = await conn.request(claim)
            r["claim"].record(perf_counter() - t0)
            if resp.status != 201:
                r["empty" if resp.status == 204 else "errors"] += 1
                continue
            for href in zaqar.claimed_hrefs(resp.body):
                t0 = perf_counter()
                d = await conn.request(build_request("DELETE", href, host, headers))
                r["delete"].record(perf_counter() - t0)
                if d.status == 204:
                    r["messages"] += 1
                else:
                    r["errors"] += 1

    async def post_back(conn: HttpConnection, queue: str, posts: int) -> None:
        req = build_request("POST", zaqar.messages_path(queue), host, json_headers, refill)
        for _ in range(posts):
            resp = await conn.request(req)
            if resp.status != 201:
                raise RuntimeError(f"refill POST returned {resp.status}")

    for _ in range(rounds):
        for queue in queues:
            left = [budget]
            before = results[queue]["messages"]
            t0 = perf_counter()
            await asyncio.gather(*(consume(c, queue, left) for c in conns))
            results[queue]["seconds"] += perf_counter() - t0
            taken = results[queue]["messages"] - before
            posts = -(-taken // 10)
            await asyncio.gather(*(post_back(c, queue, posts // connections
                                             + (i < posts % connections))
                                   for i, c in enumerate(conns)))
    for c in conns:
        c.close()
    out = {}
    for queue, r in results.items():
        out[queue] = {
            "messages": r["messages"],
            "messages_per_s": round(r["messages"] / r["seconds"], 1) if r["seconds"] else 0.0,
            "claim_p50_ms": round(r["claim"].percentile(50) * 1000, 2),
            "claim_p99_ms": round(r["claim"].percentile(99) * 1000, 2),
            "delete_p50_ms": round(r["delete"].percentile(50) * 1000, 2),
            "delete_p99_ms": round(r["delete"].percentile(99) * 1000, 2),
            "empty_claims": r["empty"],
            "errors": r["errors"],
        }
    return out


# --- the two experiments ------------------------------------------------------------


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    roles = doc["roles"]
    out: dict[str, Any] = {}
    for role, s in roles.items():
        rate = s["requests_per_s"] if role == "ping" else s["messages_per_s"]
        out[role] = {"rate": rate, "p99_ms": s["latency_ms"]["p99"],
                     "of_ping": s["fraction_of_ping"], "errors": s["errors"]}
    return out


def many_queues(work: Path, counts: list[int], bench_workers: int, seconds: float,
                spread: int) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        path = str(work / f"queues-{count}.db")
        names = [f"scale-{i}" for i in range(count)]
        timings = fill(path, names)
        used = min(count, spread)
        with Server(f"sqlite:///{path}", log_dir=work) as server:
            mem_idle = server.memory()
            doc = run_bench(server.url, "--workers", str(bench_workers), "--time", str(seconds),
                            "--queue-prefix", "scale", "--queues", str(used), "--keep-queues")
            mem_loaded = server.memory()
        row = {"queues": count, "loaded_queues": used, **timings,
               "rss_idle_kib": mem_idle["VmRSS"], "rss_after_kib": mem_loaded["VmRSS"],
               "rss_after_anon_kib": mem_loaded["RssAnon"],
               "rss_after_file_kib": mem_loaded["RssFile"],
               "file_mib": round(os.path.getsize(path) / 2**20, 1),
               "roles": summarise(doc), "load_avg": machine_load()}
        rows.append(row)
        print_many_row(row)
        os.remove(path)
    return rows


def deep_queues(work: Path, deep: int, shallow: int, rounds: int, budget: int,
                connections: int, bench_workers: int, seconds: float) -> dict[str, Any]:
    path = str(work / "deep.db")
    timings = fill(path, ["deep1m-0", "deep1k-0"], {"deep1m-0": deep, "deep1k-0": shallow})
    result: dict[str, Any] = {"deep_messages": deep, "shallow_messages": shallow, **timings,
                              "file_mib": round(os.path.getsize(path) / 2**20, 1),
                              "query_plans": query_plans(path)}
    with Server(f"sqlite:///{path}", log_dir=work) as server:
        listing = {}
        for prefix in ("deep1k", "deep1m"):
            doc = run_bench(server.url, "--roles", "ping,observer", "--workers",
                            str(bench_workers), "--time", str(seconds), "--queue-prefix",
                            prefix, "--queues", "1", "--prefill", "0", "--keep-queues")
            listing[prefix] = summarise(doc)
        result["listing"] = listing
        result["claims"] = asyncio.run(_claim_rounds(
            server.url, ["deep1k-0", "deep1m-0"], rounds, budget, connections))
        result["claims_setup"] = {"rounds": rounds, "messages_per_round": budget,
                                  "connections": connections, "per_claim": 10}
        result["rss_after_kib"] = server.memory()["VmRSS"]
    result["load_avg"] = machine_load()
    os.remove(path)
    return result


# --- output ---------------------------------------------------------------------------


def print_many_row(row: dict[str, Any]) -> None:
    r = row["roles"]

    def cell(role: str) -> str:
        s = r.get(role)
        return f"{s['rate']:>9.0f} ({s['of_ping']:.0%})" if s else "-"

    print(f"{row['queues']:>8}  {row['loaded_queues']:>6}  {r['ping']['rate']:>8.0f}  "
          f"{cell('producer'):>16}  {cell('observer'):>16}  {cell('consumer'):>16}  "
          f"{row['rss_idle_kib'] / 1024:>8.1f}  {row['rss_after_kib'] / 1024:>8.1f}  "
          f"{row['rss_after_anon_kib'] / 1024:>8.1f}  {row['create_queues_s']:>7.1f}",
          flush=True)


def print_many_header() -> None:
    print("queues N: load spread over min(N, spread) queues; rates in msg/s (ping: req/s), "
          "(fraction of ping); RSS in MiB")
    print(f"{'queues':>8}  {'loaded':>6}  {'ping':>8}  {'post 1/req':>16}  {'observer':>16}  "
          f"{'claim+delete':>16}  {'rss idle':>8}  {'rss load':>8}  {'rss anon':>8}  "
          f"{'create s':>7}", flush=True)


def print_deep(d: dict[str, Any]) -> None:
    print(f"\ndeep queue: {d['deep_messages']:,} vs {d['shallow_messages']:,} messages "
          f"(filled in {d['post_messages_s']} s, file {d['file_mib']} MiB, "
          f"server RSS after {d['rss_after_kib'] / 1024:.1f} MiB)")
    c, s = d["claims"], d["claims_setup"]
    print(f"claim 10 + delete, {s['connections']} connections, {s['rounds']} rounds of "
          f"{s['messages_per_round']} messages per queue:")
    for queue in ("deep1k-0", "deep1m-0"):
        r = c[queue]
        print(f"  {queue:9} {r['messages_per_s']:>8.0f} msg/s  claim p50 {r['claim_p50_ms']} ms "
              f"p99 {r['claim_p99_ms']} ms  delete p50 {r['delete_p50_ms']} ms "
              f"p99 {r['delete_p99_ms']} ms  empty {r['empty_claims']} errors {r['errors']}")
    ratio = c["deep1k-0"]["messages_per_s"] / max(c["deep1m-0"]["messages_per_s"], 1e-9)
    print(f"  1k/1M throughput ratio: {ratio:.2f} (target: <= 2)")
    for prefix in ("deep1k", "deep1m"):
        o = d["listing"][prefix]["observer"]
        print(f"listing {prefix}: {o['rate']:.0f} msg/s ({o['of_ping']:.0%} of ping), "
              f"p99 {o['p99_ms']} ms")
    print("query plans:")
    for name, plan in d["query_plans"].items():
        print(f"  {name}: {' | '.join(plan)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--queue-counts", default="1,1000,100000")
    p.add_argument("--spread", type=int, default=16, help="queues the load is spread over")
    p.add_argument("--deep", type=int, default=1_000_000)
    p.add_argument("--shallow", type=int, default=1_000)
    p.add_argument("--bench-workers", type=int, default=16)
    p.add_argument("--time", type=float, default=3.0, help="seconds per bench phase")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--round-messages", type=int, default=500)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--workdir", help="where the database files go (default: a new temp dir)")
    args = p.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tidings-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    began = perf_counter()
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "load_avg_at_start": machine_load(),
        "settings": vars(args),
    }
    try:
        print_many_header()
        result["many_queues"] = many_queues(
            work, [int(x) for x in args.queue_counts.split(",")], args.bench_workers,
            args.time, args.spread)
        result["deep_queue"] = deep_queues(work, args.deep, args.shallow, args.rounds,
                                           args.round_messages, args.connections,
                                           args.bench_workers, args.time)
        print_deep(result["deep_queue"])
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(perf_counter() - began, 1)
    print(f"\ntook {result['wall_s']} s; 1-minute load average at start "
          f"{result['load_avg_at_start']:.2f}, now {machine_load():.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
