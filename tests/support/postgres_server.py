"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir.

The machine's own PostgreSQL (port 5432) is never touched: each server
lives in its own directory, listens on a free 127.0.0.1 port and puts its
Unix socket in that directory.

Binaries come from PATH or from /usr/lib/postgresql/<version>/bin, where
Debian's packages install them. Without them the tests skip, except under
CI=true, where a missing server is a broken build and the tests fail.

initdb refuses to run as root, so as root the server runs as the
``postgres`` user (created by Debian's package) or, failing that,
``nobody``; its directory is owned by that user. subprocess's ``user=``
does the switch, so neither runuser nor su is needed.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

# Tables the conformance suite empties between tests (the schema stays).
DATA_TABLES = ("queues", "messages", "claims", "subscriptions", "deliveries", "secrets")
CONFORMANCE_DB = "conformance"


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    # Debian/Ubuntu keep them off PATH; prefer the newest major version.
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def major(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    for initdb in sorted(candidates, key=major, reverse=True):
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def require_bin_dir() -> Path:
    """The binaries' directory; skip the test without them (fail under CI)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = ("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
                   "/usr/lib/postgresql/*/bin; install the 'postgresql' package")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return bin_dir


def _run_as() -> pwd.struct_passwd | None:
    """The account to run the server as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """One initdb'd cluster; ``stop``/``start`` keep its port and data."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        # durable=True keeps PostgreSQL's default fsync (for benchmarks).
        self.durable = durable
        self.port = free_port()
        self.user = _run_as()
        # Not under pytest's tmp_path: its parents are mode 0700 and owned by
        # us, so a server running as another user could not reach them.
        self.base = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)

    # --- running the binaries ------------------------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}
        if self.user is not None:
            env["HOME"] = str(self.base)
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=self.base, **extra,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                + self.log_tail()
            )
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- life cycle ----------------------------------------------------------

    def init(self) -> PostgresServer:
        # C locale with UTF-8: byte-order collation and every character
        # storable, on any machine whatever locales it has generated.
        # --no-sync: a test cluster need not survive a power cut.
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        return self

    def start(self, timeout: float = 30) -> PostgresServer:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.base}",
            "-c max_connections=200",
        ]
        if not self.durable:
            # fsync/full_page_writes off make TRUNCATE and commits cheap; they
            # only matter when the OS crashes, which no test does (a pg_ctl
            # "immediate" stop is a server crash: the OS keeps the WAL).
            # synchronous_commit stays on, so a commit is in the WAL before
            # the client hears of it and survives the fault test's crash.
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", " ".join(options),
                  "-W", "start")
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll until the server accepts connections."""
        deadline = time.monotonic() + timeout
        has_isready = (self.bin_dir / "pg_isready").exists()
        while time.monotonic() < deadline:
            if has_isready:
                ready = self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port),
                                  "-U", "postgres", "-t", "1", check=False).returncode == 0
            else:  # an accepting socket is the next best sign
                with socket.socket() as sock:
                    ready = sock.connect_ex(("127.0.0.1", self.port)) == 0
            if ready:
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start in {timeout}s:\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` kills the server like a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql).stdout

    def url(self, database: str = "postgres", **options: Any) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else "")


def new_server(*, durable: bool = False) -> PostgresServer:
    """A started server of its own (the caller destroys it); skips without binaries."""
    server = PostgresServer(require_bin_dir(), durable=durable).init()
    try:
        return server.start()
    except BaseException:
        server.destroy()
        raise


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """The server every test of this process shares, started on first use."""
    global _shared
    if _shared is None:
        server = new_server()
        server.psql(f"CREATE DATABASE {CONFORMANCE_DB}")
        atexit.register(server.destroy)
        _shared = server
    return _shared


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    return shared_server()


_schema_ready = False


@asynccontextmanager
async def postgres_driver(tmp_path: Path, clock: Any) -> AsyncIterator[Any]:
    """The conformance suite's factory: an open driver on empty tables.

    One database for the session, its schema created once; each test
    starts by emptying the tables, which is far cheaper than a database or
    a schema per test.
    """
    import asyncpg

    from tidings.storage.registry import driver_from_url

    global _schema_ready
    server = shared_server()
    url = server.url(CONFORMANCE_DB, max_size=12)
    if not _schema_ready:
        driver = driver_from_url(url, clock=clock)
        await driver.open()  # creates the schema
        await driver.close()
        _schema_ready = True
    conn = await asyncpg.connect(server.url(CONFORMANCE_DB))
    try:
        await conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    driver = driver_from_url(url + "&migrate=false", clock=clock)
    await driver.open()
    try:
        yield driver
    finally:
        await driver.close()
