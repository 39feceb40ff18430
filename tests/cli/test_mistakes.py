"""Operator mistakes, one table: `tidings serve`, `migrate`, `check` and the
admin commands, run as real processes with the mistakes people make, each
answered with a non-zero exit and ONE line on standard error that starts
with ``tidings:``, names the cause and the fix (the file, variable or flag
of a setting; the address of a bind error; "did you mean" for an unknown
key), and holds no traceback.

Most cases fail before any server starts; the processes of the whole table
run a few at a time, once, and each case checks its own result.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.postgres_server import shared_server
from tests.support.redis_server import RedisServer

# Generous: a failure to start must never hang. Under load the interpreter's
# start alone can take a few seconds.
TIMEOUT = 20.0


@dataclass(frozen=True)
class Case:
    id: str
    # may use {tmp}, {free}, {busy}, {db} (a migrated SQLite file), {quiet_redis},
    # {pg_empty} (a PostgreSQL database without the schema), {pg_missing}
    args: tuple[str, ...]
    expect: tuple[str, ...]  # each in the line (formatted like args)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # written in {tmp} first
    absent: tuple[str, ...] = ()  # never in the line (a password)
    not_created: str | None = None  # a path the command must not create


SQLITE_DB = "sqlite:///{db}"
CONFIG = "{tmp}/tidings.toml"

CASES = [
    # --- the storage cannot be opened ---------------------------------------
    Case("serve-redis-unreachable", ("serve", "--storage", "redis://127.0.0.1:{free}/0"),
         ("cannot open the storage redis://127.0.0.1:{free}/0", "--storage")),
    Case("serve-workers-redis-unreachable",
         ("serve", "--workers", "2", "--storage", "redis://127.0.0.1:{free}/0"),
         ("127.0.0.1:{free}", "--storage")),
    Case("serve-postgres-unreachable",
         ("serve", "--storage", "postgres://tidings:s3cret@127.0.0.1:{free}/tidings"),
         ("postgres://tidings:***@127.0.0.1:{free}/tidings", "--storage"), absent=("s3cret",)),
    Case("serve-redis-persists-nothing", ("serve", "--storage", "{quiet_redis}"),
         ("does not persist", "unreliable=true")),
    Case("check-redis-persists-nothing", ("check", "--storage", "{quiet_redis}"),
         ("does not persist", "appendonly")),
    Case("migrate-postgres-unreachable",
         ("migrate", "--storage", "postgres://u@127.0.0.1:{free}/tidings"),
         ("127.0.0.1:{free}", "--storage")),
    Case("serve-storage-from-env-unreachable", ("serve",),
         ("127.0.0.1:{free}", "TIDINGS_STORAGE"),
         env={"TIDINGS_STORAGE": "redis://127.0.0.1:{free}/0"}),
    Case("serve-unknown-storage-scheme", ("serve", "--storage", "mongodb://127.0.0.1/x"),
         ("unknown storage scheme", "--storage")),
    # --- the data directory ------------------------------------------------
    Case("serve-data-dir-is-a-file", ("serve", "--storage", "sqlite:///{tmp}/afile/t.db"),
         ("{tmp}/afile/t.db", "is a file", "--storage"), files={"afile": "x"}),
    Case("serve-data-dir-unwritable", ("serve", "--storage", "sqlite:////proc/tidings/t.db"),
         ("/proc/tidings/t.db", "--storage")),
    Case("migrate-data-dir-is-a-file", ("migrate", "--storage", "sqlite:///{tmp}/afile/t.db"),
         ("{tmp}/afile/t.db", "is a file"), files={"afile": "x"}),
    Case("migrate-data-dir-unwritable", ("migrate", "--storage", "sqlite:////proc/tidings/t.db"),
         ("/proc/tidings/t.db", "--storage")),
    Case("check-data-dir-is-a-file", ("check", "--storage", "sqlite:///{tmp}/afile/t.db"),
         ("cannot be created", "is a file"), files={"afile": "x"}),
    # --- settings out of range --------------------------------------------
    Case("serve-port-out-of-range", ("serve", "--port", "99999"),
         ("--port 99999", "65535")),
    Case("serve-port-out-of-range-from-env", ("serve",), ("TIDINGS_PORT=99999", "65535"),
         env={"TIDINGS_PORT": "99999"}),
    Case("serve-port-not-a-number-from-env", ("serve",), ("TIDINGS_PORT=eighty", "int"),
         env={"TIDINGS_PORT": "eighty"}),
    Case("serve-port-not-a-number", ("serve", "--port", "eighty"),
         ("--port", "invalid int", "tidings serve --help")),
    Case("serve-no-workers", ("serve", "--workers", "0"), ("--workers 0", "at least 1")),
    Case("serve-negative-workers", ("serve", "--workers", "-1"),
         ("--workers -1", "at least 1")),
    Case("serve-ttl-below-the-floor", ("serve", "--config", CONFIG),
         ("limits.max_message_ttl = 10 in {tmp}/tidings.toml", "min_message_ttl (60)"),
         files={"tidings.toml": "[limits]\nmax_message_ttl = 10\n"}),
    Case("serve-ttl-below-the-floor-from-env", ("serve",),
         ("TIDINGS_LIMITS__MAX_MESSAGE_TTL=10", "min_message_ttl"),
         env={"TIDINGS_LIMITS__MAX_MESSAGE_TTL": "10"}),
    Case("serve-unknown-log-level", ("serve",), ("TIDINGS_LOG_LEVEL=loud", "debug, info"),
         env={"TIDINGS_LOG_LEVEL": "loud"}),
    Case("serve-bad-enum-in-file", ("serve", "--config", CONFIG),
         ('auth.strategy = "ldap" in {tmp}/tidings.toml', "one of noauth, keystone",
          "fix {tmp}/tidings.toml"),
         files={"tidings.toml": '[auth]\nstrategy = "ldap"\n'}),
    Case("serve-policy-file-missing", ("serve", "--storage", SQLITE_DB),
         ("/nonexistent/policy.yaml", "auth.policy_file"),
         env={"TIDINGS_AUTH__POLICY_FILE": "/nonexistent/policy.yaml"}),
    # --- unknown settings and unreadable files ----------------------------
    Case("serve-unknown-key-in-file", ("serve", "--config", CONFIG),
         ("limits.max_mesage_ttl in {tmp}/tidings.toml",
          "did you mean limits.max_message_ttl?"),
         files={"tidings.toml": "[limits]\nmax_mesage_ttl = 600\n"}),
    Case("serve-unknown-variable", ("serve",),
         ("TIDINGS_STORGE", "did you mean TIDINGS_STORAGE?"),
         env={"TIDINGS_STORGE": "sqlite:///x.db"}),
    Case("check-unknown-key-in-file", ("check", "--config", CONFIG),
         ("notifications.smtp.hots", "did you mean notifications.smtp.host?"),
         files={"tidings.toml": "[notifications.smtp]\nhots = \"mail\"\n"}),
    Case("serve-renamed-setting", ("serve", "--config", CONFIG),
         ("logging.access_format in {tmp}/tidings.toml", "it is now log_format"),
         files={"tidings.toml": '[logging]\naccess_format = "json"\n'}),
    Case("serve-toml-syntax-error", ("serve", "--config", CONFIG),
         ("{tmp}/tidings.toml is not valid TOML", "line 2"),
         files={"tidings.toml": "port = 8888\nstorage = \n"}),
    Case("serve-config-file-missing", ("serve", "--config", "{tmp}/nope.toml"),
         ("{tmp}/nope.toml", "does not exist", "--config")),
    Case("serve-config-variable-names-no-file", ("serve",),
         ("{tmp}/nope.toml", "TIDINGS_CONFIG"), env={"TIDINGS_CONFIG": "{tmp}/nope.toml"}),
    # --- the address --------------------------------------------------------
    Case("serve-address-in-use", ("serve", "--storage", SQLITE_DB, "--port", "{busy}"),
         ("127.0.0.1:{busy}", "already in use", "--port")),
    Case("serve-ws-port-in-use",
         ("serve", "--storage", SQLITE_DB, "--port", "{free}", "--ws-port", "{busy}"),
         ("127.0.0.1:{busy}", "already in use", "--ws-port")),
    Case("serve-workers-address-in-use",
         ("serve", "--storage", SQLITE_DB, "--port", "{busy}", "--workers", "2"),
         ("127.0.0.1:{busy}", "already in use", "--port")),
    # --- admin commands -----------------------------------------------------
    Case("peek-unknown-queue", ("peek", "nope", "--storage", SQLITE_DB),
         ("queue nope does not exist in project demo", "tidings queues")),
    Case("purge-unknown-queue", ("purge", "nope", "--storage", SQLITE_DB, "--project", "p2"),
         ("queue nope does not exist in project p2",)),
    Case("redrive-unknown-queue", ("redrive", "nope", "--storage", SQLITE_DB),
         ("queue nope does not exist",)),
    Case("queues-missing-database", ("queues", "--storage", "sqlite:///{tmp}/none.db"),
         ("{tmp}/none.db does not exist", "tidings migrate"),
         not_created="{tmp}/none.db"),
    Case("peek-missing-database", ("peek", "q", "--storage", "sqlite:///{tmp}/none.db"),
         ("{tmp}/none.db does not exist",), not_created="{tmp}/none.db"),
    Case("gc-missing-database", ("gc", "--storage", "sqlite:///{tmp}/none.db"),
         ("{tmp}/none.db does not exist",), not_created="{tmp}/none.db"),
    Case("check-missing-database", ("check", "--storage", "sqlite:///{tmp}/none.db"),
         ("{tmp}/none.db does not exist", "tidings migrate"),
         not_created="{tmp}/none.db"),
    Case("queues-postgres-without-schema", ("queues", "--storage", "{pg_empty}"),
         ("schema is version 0", "tidings migrate")),
    Case("check-postgres-without-schema", ("check", "--storage", "{pg_empty}"),
         ("schema is version 0", "tidings migrate")),
    Case("peek-postgres-database-missing", ("peek", "q", "--storage", "{pg_missing}"),
         ('database "tidings_nowhere" does not exist', "--storage")),
    Case("pool-list-without-control-store", ("pool", "list"),
         ("./data/tidings-control.db does not exist", "tidings pool add"),
         env={"TIDINGS_POOLING__ENABLED": "true"},
         not_created="{tmp}/data/tidings-control.db"),
    Case("queues-unknown-option", ("queues", "--projet", "demo"),
         ("unrecognized arguments: --projet",)),
]


@dataclass
class Ran:
    returncode: int | None
    stderr: str
    created: bool


def _format(text: str, values: dict[str, str]) -> str:
    return text.format(**values)


def _run(case: Case, values: dict[str, str]) -> Ran:
    tmp = Path(values["tmp"])
    tmp.mkdir(parents=True)
    for name, content in case.files.items():
        (tmp / name).write_text(content)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env = {**inherited, **{k: _format(v, values) for k, v in case.env.items()}}
    args = [_format(a, values) for a in case.args]
    try:
        done = subprocess.run([sys.executable, "-m", "tidings", *args], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Ran(None, stderr, False)
    created = case.not_created is not None and Path(_format(case.not_created, values)).exists()
    return Ran(done.returncode, done.stderr, created)


@pytest.fixture(scope="module")
def quiet_redis() -> Iterator[RedisServer]:
    """A real redis-server that persists nothing (no AOF, no RDB saves)."""
    server = RedisServer(persistent=False)
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, quiet_redis: RedisServer
             ) -> Iterator[dict[str, tuple[Ran, dict[str, str]]]]:
    base = tmp_path_factory.mktemp("mistakes")
    postgres_server = shared_server()
    empty = f"mistakes_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE DATABASE {empty}")
    db = base / "admin.db"
    subprocess.run([sys.executable, "-m", "tidings", "migrate", "--storage", f"sqlite:///{db}"],
                   check=True, capture_output=True, timeout=60)
    # A port something listens on: the server must say so, naming it.
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        plans = {}
        for case in CASES:
            # {free}: a port nobody listens on (taken and let go).
            plans[case.id] = {"tmp": str(base / case.id), "free": str(free_port()),
                              "busy": str(busy.getsockname()[1]), "db": str(db),
                              "quiet_redis": quiet_redis.url,
                              "pg_empty": postgres_server.url(empty),
                              "pg_missing": postgres_server.url("tidings_nowhere")}
        # Two cores are enough to overlap the interpreters' start-up.
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(zip(plans, pool.map(lambda c: _run(c, plans[c.id]), CASES)))
        yield {name: (results[name], plans[name]) for name in plans}
    finally:
        busy.close()


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_line_naming_cause_and_fix(case: Case, outcomes: dict[str, Any]) -> None:
    ran, values = outcomes[case.id]
    assert ran.returncode is not None, f"still running after {TIMEOUT}s:\n{ran.stderr}"
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    line = lines[0]
    assert line.startswith("tidings:"), line
    assert "Traceback" not in ran.stderr
    for expected in case.expect:
        assert _format(expected, values) in line, line
    for secret in case.absent:
        assert secret not in ran.stderr
    assert not ran.created, f"{case.not_created} was created"


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "serve", "--log-level", "debug",
         "--storage", f"redis://127.0.0.1:{port}/0"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")})
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"tidings: cannot open the storage redis://127.0.0.1:{port}/0")
