"""Real redis-server processes for the tests, on free loopback ports.

Never the machine's own Redis (6379): every server here is started by the
test session, keeps its files in a temporary directory, and is stopped at
exit. The conformance suite's driver factories take no fixtures, so the
session's servers are process-wide singletons started on first use.

Missing binaries skip the Redis tests on a developer's machine, and fail
them under CI=true, where a silent skip would hide a broken setup.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.clock import FakeClock
from tests.support.ports import free_port
from tidings.storage.base import DataDriver
from tidings.storage.registry import driver_from_url


def require_binary(name: str) -> str:
    """The path of ``name``; skip the test when missing, fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} is not on PATH: the Redis tests need a real server "
            "(Debian: apt-get install redis-server redis-tools; scripts/test.sh does it)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command and read one reply (raw RESP), for readiness polls."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return reply
            reply += chunk
            head, sep, rest = reply.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$"):
                return reply  # a one-line reply: +PONG, -LOADING ...
            if len(rest) >= int(head[1:]) + 2:
                return reply


class PortTaken(RuntimeError):
    """redis-server exited because its port was bound by another process."""


class RedisServer:
    """One redis-server; ``stop`` and ``start`` keep its port and its data."""

    def __init__(self, *, persistent: bool = True, extra: tuple[str, ...] = (),
                 port: int | None = None, directory: Path | None = None) -> None:
        self.binary = require_binary("redis-server")
        # A port of our choosing may be re-chosen until the server first runs
        # on it; after that (and when the caller gave one) it is the server's.
        self.port_is_settled = port is not None
        self.port = port or free_port(with_bus=self.is_cluster_node(extra))
        self.dir = directory or Path(tempfile.mkdtemp(prefix=f"tidings-redis-{self.port}-"))
        self.persistent = persistent
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if self.persistent
            else ["--save", "", "--appendonly", "no"]
        )
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", str(self.dir / "redis.log"), *persistence, *self.extra,
        ]

    @staticmethod
    def is_cluster_node(extra: tuple[str, ...]) -> bool:
        return "--cluster-enabled" in extra

    def start(self, timeout: float = 20.0) -> RedisServer:
        for _ in range(5):
            self.process = subprocess.Popen(
                self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self.wait_ready(timeout)
            except PortTaken:
                if self.port_is_settled:
                    raise
                # Another listener bound the port after we chose it: a first
                # start may move, a restart must keep its port.
                (self.dir / "redis.log").unlink(missing_ok=True)
                self.port = free_port(with_bus=self.is_cluster_node(self.extra))
                continue
            self.port_is_settled = True
            return self
        raise RuntimeError("redis-server found every port it was given taken")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (self.dir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                if "Address already in use" in tail:
                    raise PortTaken(f"port {self.port} is taken:\n{tail}")
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
            try:
                # Replies -LOADING while it reads the AOF back: not ready yet.
                if _command(self.port, "PING").startswith(b"+PONG"):
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} not ready in {timeout}s: {last}")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits, as in a clean restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash; ``start`` brings it back on its port and data."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket but answers nothing (a hang)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """Three masters, no replicas: the smallest real Redis Cluster. With
    ``replicas=1``, a replica per master (3 + 3), promoted by the cluster
    ``node_timeout`` ms after its master stops answering."""

    def __init__(self, size: int = 3, *, replicas: int = 0, node_timeout: int = 5000,
                 extra: tuple[str, ...] = ()) -> None:
        self.cli = require_binary("redis-cli")
        self.replicas = replicas
        self.nodes = [
            RedisServer(extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-node-timeout", str(node_timeout), *extra))
            for _ in range(size * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (all(b"cluster_state:ok" in _command(n.port, "CLUSTER", "INFO")
                    for n in self.nodes) and self._replicas_in_sync()):
                return self
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def _replicas_in_sync(self) -> bool:
        """Every master has its replicas attached and past the first sync."""
        if not self.replicas:
            return True
        import redis

        online = 0
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1.0) as client:
                info = client.info("replication")
            if info.get("role") == "master":
                online += sum(1 for k, v in info.items()
                              if k.startswith("slave") and isinstance(v, dict)
                              and v.get("state") == "online")
        return online >= len(self.nodes) // (1 + self.replicas) * self.replicas

    def node_of_key(self, key: str) -> RedisServer:
        """The master that serves ``key``'s slot, as a running node sees it."""
        import redis

        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                with redis.Redis(port=node.port, socket_timeout=1.0) as client:
                    slot = client.execute_command("CLUSTER", "KEYSLOT", key)
                    ranges = client.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            for first, last, master, *_ in ranges:
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no running node knows who serves {key!r}")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


_session: dict[str, Any] = {}


def _cleanup_session() -> None:
    for servers in _session.values():
        servers.cleanup()
    _session.clear()


atexit.register(_cleanup_session)


def session_redis() -> RedisServer:
    """The session's persistent single redis-server, started on first use."""
    if "single" not in _session:
        server = RedisServer()
        _session["single"] = server  # registered before start: cleaned up even if it fails
        server.start()
    return _session["single"]


def session_redis_cluster() -> RedisClusterServers:
    """The session's three-master Redis Cluster, started on first use."""
    if "cluster" not in _session:
        cluster = RedisClusterServers()
        _session["cluster"] = cluster
        cluster.start()
    return _session["cluster"]


def unique_prefix() -> str:
    """A key prefix per test: fresh storage on a shared server, no FLUSHALL."""
    return f"t{uuid.uuid4().hex[:12]}:"


@asynccontextmanager
async def _open(url: str, clock: FakeClock) -> AsyncIterator[DataDriver]:
    driver = driver_from_url(url, clock=clock)
    await driver.open()
    try:
        yield driver
    finally:
        await driver.close()


@asynccontextmanager
async def redis_driver(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DataDriver]:
    """Conformance factory: the session's redis-server, a fresh key prefix."""
    server = session_redis()
    async with _open(f"{server.url}?prefix={unique_prefix()}", clock) as driver:
        yield driver


@asynccontextmanager
async def redis_cluster_driver(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DataDriver]:
    """Conformance factory: the session's Redis Cluster, a fresh key prefix."""
    cluster = session_redis_cluster()
    async with _open(f"{cluster.url}?prefix={unique_prefix()}", clock) as driver:
        yield driver
