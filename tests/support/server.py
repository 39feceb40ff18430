"""Start a real `tidings serve` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port

PING_HEADERS = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "ping"}


@dataclass
class ServerProcess:
    """A server subprocess; ``restart`` keeps the same port and database."""

    storage: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # ``serve --workers N``: a supervisor process and N worker processes.
    workers: int = 1
    # The tidings command: this interpreter's, unless told (an installed one).
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "tidings"])
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        # The server reads every TIDINGS_* variable as a setting; the test
        # run's own (TIDINGS_SOAK_SECONDS, ...) must not reach it. Servers get
        # exactly the settings their fixture gives.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env = {**inherited, "TIDINGS_GC_INTERVAL": "0", **self.env}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            workers = ["--workers", str(self.workers)] if self.workers > 1 else []
            self.process = subprocess.Popen(
                [*self.program, "serve", "--port", str(self.port),
                 "--storage", self.storage, *workers],
                env=env, stdout=log, stderr=subprocess.STDOUT,
                # Its own process group, so kill() reaches the workers too.
                start_new_session=self.workers > 1,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child has its own copy of the descriptor
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tidings serve exited with {self.process.returncode}")
            try:
                answer = httpx.get(self.url + "/v2/ping", headers=PING_HEADERS, timeout=1)
                if answer.status_code == 204:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tidings serve did not answer on {self.url} in {timeout}s")

    def worker_pids(self) -> list[int]:
        """The worker processes of ``--workers N`` (Linux: read from /proc):
        the supervisor's children that multiprocessing spawned, not its
        resource tracker."""
        if self.process is None:
            return []
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if ppid == self.process.pid and b"spawn_main" in cmdline:
                pids.append(int(stat.parent.name))
        return sorted(pids)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, like a crash."""
        if self.process is not None and self.process.poll() is None:
            if self.workers > 1:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()
