#!/usr/bin/env python3
"""Zaqar and Tidings under the same load, side by side (the first table of
BENCHMARKS.md). Run through scripts/bench_vs_zaqar.sh, which installs Zaqar
and uWSGI into a cached venv and passes it here with --zaqar-venv.

Every server is started once, on a free loopback port, each with a private
backend: Zaqar (uWSGI, 2 processes x 4 threads, as devstack runs it) on its
own redis-server, and each Tidings configuration (sqlite1, sqlite2, redis1,
redis2, postgres1, postgres2: driver and `--workers`) on its own redis-server
or PostgreSQL cluster. Then, for --rounds rounds, every server in turn
(round-robin, so a slow minute of a shared machine spreads over all of them)
takes the same `tidings bench` runs:

  ping + post 1   --roles ping,producer --messages-per-post 1
  post 10         --roles producer --messages-per-post 10
  claim 10        --roles consumer --messages-per-claim 10 (then DELETE each)

all at --connections concurrent connections. The table shows the median
over the rounds, each Tidings figure also as a multiple of Zaqar's.

With --sqs, the sqlite1 server also takes the SQS API's SendMessage,
SendMessageBatch of 10 and ReceiveMessage of 10 + DeleteMessageBatch,
beside the Zaqar API's claim 10 + one bulk DELETE, in the same rounds.

--backend-cpus / --server-cpus / --bench-cpus pin, with `taskset`, the
backends (redis-server, PostgreSQL), the servers (Tidings, Zaqar's uWSGI)
and the load generator to CPU lists, so that they do not share cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matrix import PostgresBackend, RedisBackend
from bench_scale import PROJECT, Server, free_port, machine_load, run_bench

CONFIGS = {  # name: (driver, tidings serve --workers)
    "sqlite1": ("sqlite", 1), "sqlite2": ("sqlite", 2),
    "redis1": ("redis", 1), "redis2": ("redis", 2),
    "postgres1": ("postgres", 1), "postgres2": ("postgres", 2),
}
LABELS = {
    "zaqar": "Zaqar {version} + Redis, uWSGI 2 processes × 4 threads",
    "sqlite1": "Tidings SQLite, one process", "sqlite2": "Tidings SQLite, `--workers 2`",
    "redis1": "Tidings Redis (appendonly), one process",
    "redis2": "Tidings Redis, `--workers 2`",
    "postgres1": "Tidings PostgreSQL, one process",
    "postgres2": "Tidings PostgreSQL, `--workers 2`",
}
# (key in a round's figures, column heading)
COLUMNS = [
    ("ping", "ping (req/s)"), ("post1", "post 1 (req/s)"), ("post10", "post 10 (msg/s)"),
    ("claim10", "claim 10 (msg/s)"), ("post1_p99", "p99 of post 1"),
    ("claim10_p99", "p99 of claim 10"),
]
SQS_ROWS = [
    ("post1", "Zaqar API: POST 1 message"), ("sqs_send", "SQS: SendMessage"),
    ("post10", "Zaqar API: POST 10 messages"), ("sqs_batch", "SQS: SendMessageBatch of 10"),
    ("claim10", "Zaqar API: claim 10 + DELETE each"),
    ("claimbulk", "Zaqar API: claim 10 + one bulk DELETE"),
    ("sqs_receive", "SQS: ReceiveMessage of 10 + DeleteMessageBatch"),
]
CLIENT_ID = "3381af92-2b9e-11e3-b191-71861300734c"


# --- pinning ----------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and every process below it (uWSGI workers, PostgreSQL backends)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def pin(pid: int, cpus: str | None) -> None:
    """Move a process tree, every thread of it, to a CPU list. Processes
    forked later (a PostgreSQL backend per connection) inherit it."""
    if not cpus:
        return
    for each in descendants(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(each)],
                       capture_output=True, check=False)


# --- Zaqar ------------------------------------------------------------------------------


class ZaqarServer:
    """Zaqar's WSGI app under uWSGI, with message and management stores on
    a private redis-server; no authentication (X-Project-ID is trusted)."""

    def __init__(self, venv: Path, work: Path, redis_port: int) -> None:
        self.venv = venv
        self.dir = work / "zaqar-uwsgi"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        redis = f"redis://127.0.0.1:{redis_port}"
        # oslo.config reads ~/.zaqar/zaqar.conf first: HOME points at this
        # server's own directory, so no system-wide file is read or written.
        (self.dir / ".zaqar").mkdir()
        (self.dir / ".zaqar" / "zaqar.conf").write_text(f"""[DEFAULT]
# No authentication: X-Project-ID is trusted, as Tidings' noauth does.
auth_strategy =
pooling = False

[drivers]
transport = wsgi
message_store = redis
management_store = redis

[drivers:message_store:redis]
uri = {redis}

[drivers:management_store:redis]
uri = {redis}
""")
        # devstack's uWSGI settings for an API service (write_uwsgi_config),
        # with 2 processes of 4 threads. devstack also adds "Connection:
        # close" because Apache proxies to it; without Apache in front that
        # would cost Zaqar a TCP connect per request, so it is left out and
        # uWSGI keeps connections alive as Tidings does: http11-socket, as
        # http-socket resets a connection after its first answer.
        (self.dir / "uwsgi.ini").write_text(f"""[uwsgi]
http11-socket = 127.0.0.1:{self.port}
module = zaqar.transport.wsgi.app:application
virtualenv = {venv}
processes = 2
threads = 4
master = true
enable-threads = true
thunder-lock = true
lazy-apps = true
die-on-term = true
exit-on-reload = false
buffer-size = 65535
disable-logging = true
""")
        self.log = open(self.dir / "uwsgi.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "uwsgi"), "--ini", str(self.dir / "uwsgi.ini")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir,
            env={**os.environ, "HOME": str(self.dir), "PATH": f"{venv}/bin:{os.environ['PATH']}"})
        self._wait()

    def _wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("uWSGI exited:\n" + (self.dir / "uwsgi.log").read_text()[-3000:])
            try:
                request = urllib.request.Request(
                    self.url + "/v2/ping",
                    headers={"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 204:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("Zaqar did not answer; see " + str(self.dir / "uwsgi.log"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def smoke_test(url: str) -> None:
    """A post and a claim through the plain Zaqar v2 API, before any load."""
    headers = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT,
               "Content-Type": "application/json"}

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None

    assert call("PUT", "/v2/queues/smoke", {})[0] in (201, 204)
    status, posted = call("POST", "/v2/queues/smoke/messages",
                          {"messages": [{"ttl": 300, "body": {"n": 1}}]})
    assert status == 201 and len(posted["resources"]) == 1, (status, posted)
    status, claimed = call("POST", "/v2/queues/smoke/claims?limit=5", {"ttl": 60, "grace": 60})
    assert status == 201 and claimed["messages"][0]["body"] == {"n": 1}, (status, claimed)
    call("DELETE", "/v2/queues/smoke")


# --- measuring ----------------------------------------------------------------------------


def bench(url: str, connections: int, seconds: float, warmup: float, *args: str
          ) -> dict[str, Any]:
    return run_bench(url, "--workers", str(connections), "--time", str(seconds),
                     "--warmup", str(warmup), *args)


def one_round(url: str, args: argparse.Namespace, sqs: bool) -> dict[str, Any]:
    """Every figure of one server, once."""
    c, t, w = args.connections, args.time, args.warmup
    out: dict[str, Any] = {}
    doc = bench(url, c, t, w, "--roles", "ping,producer", "--messages-per-post", "1")
    out["ping"] = doc["roles"]["ping"]["requests_per_s"]
    out["post1"] = doc["roles"]["producer"]["requests_per_s"]
    out["post1_p99"] = doc["roles"]["producer"]["latency_ms"]["p99"]
    out["post1_errors"] = doc["roles"]["producer"]["errors"]
    doc = bench(url, c, t, w, "--roles", "producer", "--messages-per-post", "10")
    out["post10"] = doc["roles"]["producer"]["messages_per_s"]
    out["post10_p99"] = doc["roles"]["producer"]["latency_ms"]["p99"]
    out["post10_errors"] = doc["roles"]["producer"]["errors"]
    # Enough messages that the consumers cannot drain the queue: claims
    # move about as many messages a second as posts of 10 do.
    prefill = str(min(200_000, max(20_000, int(1.5 * out["post10"] * (t + w)))))
    consumers = [("claim10", "consumer", [])]
    if sqs:
        consumers += [("claimbulk", "consumer", ["--bulk-delete"]),
                      ("sqs_receive", "sqs_consumer", [])]
        for key, count in (("sqs_send", "1"), ("sqs_batch", "10")):
            doc = bench(url, c, t, w, "--roles", "sqs_producer", "--messages-per-post", count)
            s = doc["roles"]["sqs_producer"]
            out[key] = s["messages_per_s"]
            out[key + "_p99"] = s["latency_ms"]["p99"]
            out[key + "_errors"] = s["errors"]
    for key, role, extra in consumers:
        doc = bench(url, c, t, w, "--roles", role, "--messages-per-claim", "10",
                    "--prefill", prefill, *extra)
        s = doc["roles"][role]
        out[key] = s["messages_per_s"]
        out[key + "_p99"] = s["latency_ms"]["p99"]
        out[key + "_errors"] = s["errors"]
        out[key + "_empty"] = s.get("empty_claims", s.get("empty_receives", 0))
    return out


def median_of(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if key.endswith("_p99") else f"{value:,.0f}"


def times(value: float | None, base: float | None, key: str) -> str:
    """A Tidings figure as a multiple of Zaqar's (for a latency, lower is better)."""
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)" if key.endswith("_p99") else f" ({value / base:.1f}×)"


def print_tables(result: dict[str, Any]) -> None:
    rounds = result["rounds"]
    medians = {name: {k: median_of(rs, k) for k in rs[0]} for name, rs in rounds.items()}
    zaqar = medians.get("zaqar", {})
    print("\n| server | " + " | ".join(h for _, h in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, m in medians.items():
        label = LABELS[name].format(version=result["zaqar_version"])
        cells = [fmt(k, m.get(k)) + ("" if name == "zaqar" else times(m.get(k), zaqar.get(k), k))
                 for k, _ in COLUMNS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nper round (" + ", ".join(k for k, _ in COLUMNS) + "):")
    for name, rs in rounds.items():
        print(f"  {name:10} " + " / ".join(
            "[" + ", ".join(fmt(k, r.get(k)) for k, _ in COLUMNS) + "]" for r in rs))
    sqs = medians.get("sqlite1", {})
    if "sqs_send" in sqs:
        print("\n| Tidings SQLite, one process | msg/s | p99 |\n|---|---|---|")
        for key, label in SQS_ROWS:
            p99 = fmt(key + "_p99", sqs.get(key + "_p99"))
            print(f"| {label} | {fmt(key, sqs.get(key))} | {p99} |")
    for name, rs in rounds.items():  # a rate is only meaningful without these
        found = {k: sum(r[k] for r in rs) for k in rs[0] if k.endswith(("_errors", "_empty"))}
        found = {k: v for k, v in found.items() if v}
        print(f"  {name}: errors and empty claims over every round: {found or 'none'}")


# --- main -------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zaqar-venv", type=Path, required=True)
    p.add_argument("--zaqar-version", default="?")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma list of zaqar and {','.join(CONFIGS)}")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--time", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--sqs", action="store_true",
                   help="also the SQS API's operations on sqlite1")
    p.add_argument("--backend-cpus", help="taskset CPU list for redis-server and PostgreSQL")
    p.add_argument("--server-cpus", help="taskset CPU list for Tidings and Zaqar's uWSGI")
    p.add_argument("--bench-cpus", help="taskset CPU list for the load generator")
    p.add_argument("--out", type=Path, help="every figure as JSON here")
    args = p.parse_args()

    names = ["zaqar"] + [n for n in args.configs.split(",") if n and n != "zaqar"]
    unknown = set(names) - {"zaqar", *CONFIGS}
    if unknown:
        p.error(f"unknown configurations {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="tidings-vs-zaqar-"))
    backends: list[Any] = []
    servers: dict[str, Any] = {}
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                              "load_avg_at_start": machine_load(), "settings": {
                                  k: str(v) for k, v in vars(args).items()},
                              "zaqar_version": args.zaqar_version, "rounds": {}}
    try:
        for name in names:
            # Each server its own backend, so no two share a Redis or a cluster.
            if name == "zaqar":
                redis = RedisBackend(_subdir(work, name))
                backends.append(redis)
                pin(redis.proc.pid, args.backend_cpus)
                servers[name] = ZaqarServer(args.zaqar_venv, work, redis.port)
                smoke_test(servers[name].url)
                print(f"zaqar: {servers[name].url}, Redis on port {redis.port}: "
                      "a post and a claim work", flush=True)
            else:
                driver, size = CONFIGS[name]
                if driver == "sqlite":
                    storage = f"sqlite:///{work}/{name}.db"
                elif driver == "redis":
                    backend = RedisBackend(_subdir(work, name))
                    backends.append(backend)
                    pin(backend.proc.pid, args.backend_cpus)
                    storage = backend.fresh_url()
                else:
                    backend = PostgresBackend(_subdir(work, name))
                    backends.append(backend)
                    postmaster = int((backend.data / "postmaster.pid").read_text().split()[0])
                    pin(postmaster, args.backend_cpus)
                    storage = backend.fresh_url()
                servers[name] = Server(storage, workers=size, log_dir=work).start()
                print(f"{name}: {servers[name].url} ({storage})", flush=True)
            pin(servers[name].pid, args.server_cpus)
            result["rounds"][name] = []
        if args.bench_cpus:  # inherited by every bench process started from here on
            os.sched_setaffinity(0, {int(c) for c in _cpu_list(args.bench_cpus)})
        for number in range(1, args.rounds + 1):
            for name in names:
                began = time.monotonic()
                figures = one_round(servers[name].url, args,
                                    sqs=args.sqs and name == "sqlite1")
                figures["load_avg"] = machine_load()
                result["rounds"][name].append(figures)
                print(f"round {number} {name:10} " + ", ".join(
                    f"{k} {fmt(k, figures.get(k))}" for k, _ in COLUMNS)
                      + f"  ({time.monotonic() - began:.0f} s, load {figures['load_avg']:.2f})",
                      flush=True)
                if args.out:
                    args.out.write_text(json.dumps(result, indent=2))
    finally:
        for server in servers.values():
            server.stop()
        for backend in backends:
            backend.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["load_avg_at_end"] = machine_load()
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print_tables(result)
    print(f"\n1-minute load average {result['load_avg_at_start']:.2f} at start, "
          f"{result['load_avg_at_end']:.2f} at end")
    return 0


def _subdir(work: Path, name: str) -> Path:
    """A directory for one backend (RedisBackend makes its own redis/ in it)."""
    path = work / name
    path.mkdir(exist_ok=True)
    return path


def _cpu_list(text: str) -> list[int]:
    """taskset's CPU list syntax: 0,2-3."""
    cpus = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus += range(int(low), int(high or low) + 1)
    return cpus


if __name__ == "__main__":
    sys.exit(main())
