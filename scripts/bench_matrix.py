#!/usr/bin/env python3
"""The main table of BENCHMARKS.md: every operation, per driver, for one
server process and for `tidings serve --workers 2`, median of 3 runs.

    python scripts/bench_matrix.py --out /tmp/matrix.json
    python scripts/bench_matrix.py --drivers sqlite,redis,postgres --out /tmp/m.json

For each driver and server size it starts a fresh server (and, for Redis or
PostgreSQL, a fresh backend of its own under a temp dir, on a free port),
then for each operation

  post1      producer, 1 message per POST
  post10     producer, 10 messages per POST
  claim      consumer: claim 10, then DELETE each message by its href
  claimbulk  consumer: claim 10, then one DELETE ?ids=...&claim_ids=...
  observer   observer: GET pages of 10 by marker

runs `tidings bench --roles ping,<role>` once at each of --bench-workers
(concurrent connections), keeps the concurrency with the highest rate, and
runs it --runs - 1 more times: figures are the medians of those --runs runs,
each rate also as a fraction of the ping ceiling measured in the same run.

Then, for --half-load-server-workers, the p99 at half the maximum load: the
bench has no rate limiter, so it runs at --half-workers (1, 2, 3, 4, 6
connections), keeps the concurrency whose rate is closest to half the
maximum found above, runs it --runs - 1 more times and reports the median
p99 and the median rate (as a fraction of the maximum).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import Server, free_port, machine_load, run_bench

OPS: dict[str, tuple[str, list[str]]] = {
    "post1": ("producer", ["--messages-per-post", "1"]),
    "post10": ("producer", ["--messages-per-post", "10"]),
    "claim": ("consumer", ["--messages-per-claim", "10"]),
    "claimbulk": ("consumer", ["--messages-per-claim", "10", "--bulk-delete"]),
    "observer": ("observer", ["--observer-limit", "10"]),
}


# --- backends ---------------------------------------------------------------------


class SqliteBackend:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.n = 0

    def fresh_url(self) -> str:
        self.n += 1
        return f"sqlite:///{self.work}/matrix-{self.n}.db"

    def describe(self) -> str:
        return "SQLite file under /tmp, WAL, synchronous=FULL (the default: a 201 is on disk)"

    def stop(self) -> None:
        pass


class RedisBackend:
    def __init__(self, work: Path) -> None:
        self.dir = work / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait()
        self.n = 0

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                 capture_output=True, text=True, check=False)
            if out.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def fresh_url(self) -> str:
        self.n += 1
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], capture_output=True,
                       check=True)
        return f"redis://127.0.0.1:{self.port}/0"

    def describe(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=False)
        return (f"{out.stdout.strip()}; --appendonly yes --appendfsync everysec "
                "(AOF written per command, fsync once a second)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


class PostgresBackend:
    def __init__(self, work: Path) -> None:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not candidates and not shutil.which("initdb"):
            raise RuntimeError("no initdb")
        self.bin = candidates[-1].parent if candidates else Path(shutil.which("initdb")).parent
        self.base = Path(tempfile.mkdtemp(prefix="tidings-bench-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.user:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--encoding=UTF8", "--locale=C")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.base} -c max_connections=200 "
                "-c shared_buffers=256MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", opts,
                  "-w", "start")
        self.n = 0

    def _run(self, *args: str) -> str:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base,
                             env={**os.environ, "LC_ALL": "C"}, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}")
        return out.stdout

    def fresh_url(self) -> str:
        self.n += 1
        name = f"bench{self.n}"
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-c", f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def describe(self) -> str:
        version = self._run("postgres", "--version").strip()
        return (f"{version}; initdb defaults (fsync=on, synchronous_commit=on: a 201 is "
                "on disk), shared_buffers=256MB")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


BACKENDS = {"sqlite": SqliteBackend, "redis": RedisBackend, "postgres": PostgresBackend}


# --- measuring ------------------------------------------------------------------------


def one_run(url: str, op: str, workers: int, seconds: float, warmup: float) -> dict[str, Any]:
    role, extra = OPS[op]
    doc = run_bench(url, "--roles", f"ping,{role}", "--workers", str(workers),
                    "--time", str(seconds), "--warmup", str(warmup), *extra)
    s, ping = doc["roles"][role], doc["roles"]["ping"]
    return {
        "workers": workers,
        "rate": s["messages_per_s"],  # messages/s for every role here
        "requests_per_s": s["requests_per_s"],
        "ping": ping["requests_per_s"],
        "of_ping": s["fraction_of_ping"],
        "p50_ms": s["latency_ms"]["p50"],
        "p99_ms": s["latency_ms"]["p99"],
        "errors": s["errors"],
        "bench_cpu_pct": s["bench_cpu_pct"],
        "claims": s.get("claims", 0),
        "empty_claims": s.get("empty_claims", 0),
        "load_avg": machine_load(),
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rate", "requests_per_s", "ping", "of_ping", "p50_ms", "p99_ms", "bench_cpu_pct")
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    out["workers"] = runs[0]["workers"]
    out["errors"] = sum(r["errors"] for r in runs)
    out["empty_claims"] = sum(r["empty_claims"] for r in runs)
    out["rates"] = [r["rate"] for r in runs]
    return out


def measure_cell(url: str, ops: list[str], scan: list[int], runs: int, seconds: float,
                 warmup: float, label: str) -> dict[str, Any]:
    cell = {}
    for op in ops:
        tried = [one_run(url, op, w, seconds, warmup) for w in scan]
        best = max(tried, key=lambda r: r["rate"])
        more = [one_run(url, op, best["workers"], seconds, warmup) for _ in range(runs - 1)]
        cell[op] = {**medians([best, *more]),
                    "scan": {r["workers"]: r["rate"] for r in tried}}
        m = cell[op]
        print(f"  {label:14} {op:9} workers={m['workers']:<3} {m['rate']:>9.0f} msg/s "
              f"{m['of_ping']:>6.1%} of ping ({m['ping']:.0f} req/s)  p99 {m['p99_ms']:.2f} ms"
              f"  runs {m['rates']}  scan {m['scan']}", flush=True)
    return cell


def measure_half(url: str, ops: list[str], maxima: dict[str, Any], half_workers: list[int],
                 runs: int, seconds: float, warmup: float, label: str) -> dict[str, Any]:
    out = {}
    for op in ops:
        target = maxima[op]["rate"] / 2
        tried = [one_run(url, op, w, seconds, warmup) for w in half_workers]
        near = min(tried, key=lambda r: abs(r["rate"] - target))
        more = [one_run(url, op, near["workers"], seconds, warmup) for _ in range(runs - 1)]
        m = medians([near, *more])
        m["of_max"] = round(m["rate"] / maxima[op]["rate"], 3) if maxima[op]["rate"] else None
        m["scan"] = {r["workers"]: r["rate"] for r in tried}
        out[op] = m
        print(f"  {label:14} {op:9} half load: workers={m['workers']} {m['rate']:.0f} msg/s "
              f"= {m['of_max']:.0%} of max, p99 {m['p99_ms']:.2f} ms, p50 {m['p50_ms']:.2f} ms"
              f"  scan {m['scan']}", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write every figure as JSON here")
    p.add_argument("--drivers", default="sqlite")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--server-workers", default="1,2")
    p.add_argument("--bench-workers", default="8,16,32",
                   help="concurrent connections to try; the best is kept per operation")
    p.add_argument("--half-workers", default="1,2,3,4,6")
    p.add_argument("--half-load-server-workers", default="1",
                   help="server sizes to measure p99 at half load for ('' for none)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--time", type=float, default=3.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args()

    ops = args.ops.split(",")
    scan = [int(x) for x in args.bench_workers.split(",")]
    half_workers = [int(x) for x in args.half_workers.split(",")]
    half_sizes = {int(x) for x in args.half_load_server_workers.split(",") if x}
    work = Path(tempfile.mkdtemp(prefix="tidings-matrix-"))
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                              "load_avg_at_start": machine_load(), "settings": vars(args),
                              "drivers": {}}
    began = perf_counter()
    try:
        for driver in args.drivers.split(","):
            backend = BACKENDS[driver](work)
            entry: dict[str, Any] = {"backend": backend.describe(), "servers": {}}
            result["drivers"][driver] = entry
            print(f"{driver}: {entry['backend']}", flush=True)
            try:
                for size in (int(x) for x in args.server_workers.split(",")):
                    label = f"{driver} x{size}"
                    with Server(backend.fresh_url(), workers=size, log_dir=work) as server:
                        cell = measure_cell(server.url, ops, scan, args.runs, args.time,
                                            args.warmup, label)
                        entry["servers"][size] = {"max": cell}
                        if size in half_sizes:
                            entry["servers"][size]["half_load"] = measure_half(
                                server.url, ops, cell, half_workers, args.runs, args.time,
                                args.warmup, label)
                    if args.out:  # keep what is done if a later driver fails
                        result["wall_s"] = round(perf_counter() - began, 1)
                        Path(args.out).write_text(json.dumps(result, indent=2))
            finally:
                backend.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(perf_counter() - began, 1)
    result["load_avg_at_end"] = machine_load()
    print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def print_table(result: dict[str, Any]) -> None:
    print("\nmsg/s, median of runs (fraction of the ping ceiling of the same run) "
          "[bench connections]")
    ops = result["settings"]["ops"].split(",")
    print(f"{'driver':10} {'server':6} " + " ".join(f"{op:>24}" for op in ops))
    for driver, entry in result["drivers"].items():
        for size, cell in entry["servers"].items():
            cells = [f"{m['rate']:>8.0f} ({m['of_ping']:>5.1%}) [{m['workers']:>2}]"
                     for m in (cell["max"][op] for op in ops)]
            print(f"{driver:10} {'x' + str(size):6} " + " ".join(f"{c:>24}" for c in cells))
            half = cell.get("half_load")
            if half:
                cells = [f"p99 {m['p99_ms']:.2f}ms @{m['of_max']:.0%} [{m['workers']}]"
                         for m in (half[op] for op in ops)]
                print(f"{'':10} {'half':6} " + " ".join(f"{c:>24}" for c in cells))
    print(f"\ntook {result['wall_s']} s; 1-minute load average {result['load_avg_at_start']:.2f} "
          f"at start, {result['load_avg_at_end']:.2f} at end")


if __name__ == "__main__":
    sys.exit(main())
