"""Fixtures of the SQS tier: real `tidings serve` processes (SQLite, and
Redis and PostgreSQL on the session's shared servers) and boto3 clients.

Each test works in a project of its own: under noauth the access key id
of an SQS client is its project.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from tests.support import postgres_server, redis_server
from tests.support.server import ServerProcess

BACKENDS = ["sqlite", "redis", "postgres"]
REGION = "us-east-1"
# Retries would hide the first answer, which is the one under test.
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=60)

_SESSION = boto3.session.Session()


def storage_url(backend: str, base: Any) -> str:
    """A fresh namespace: a SQLite file, a Redis key prefix or a PostgreSQL
    database on the session's shared server."""
    if backend == "sqlite":
        return f"sqlite:///{base}/tidings.db"
    if backend == "redis":
        return f"{redis_server.session_redis().url}?prefix={redis_server.unique_prefix()}"
    pg = postgres_server.shared_server()
    database = f"sqs_{uuid.uuid4().hex[:10]}"
    pg.psql(f"CREATE DATABASE {database}")
    return pg.url(database, max_size=10)


@pytest.fixture(scope="session", params=BACKENDS)
def sqs_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    """A server on each backend; on SQLite, the session's shared one."""
    if request.param == "sqlite":
        yield request.getfixturevalue("server")
        return
    base = tmp_path_factory.mktemp(f"sqs-{request.param}")
    proc = ServerProcess(storage=storage_url(request.param, base), log_path=base / "server.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def sqlite_server(server: ServerProcess) -> ServerProcess:
    """The session's shared SQLite server, for the tests that need no
    other backend."""
    return server


def sqs_client(url: str, access_key: str, secret: str = "unused-under-noauth") -> Any:
    return _SESSION.client("sqs", endpoint_url=url, region_name=REGION,
                           aws_access_key_id=access_key, aws_secret_access_key=secret,
                           config=NO_RETRIES)


@pytest.fixture
def project() -> str:
    return f"p{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client_for(project: str) -> Callable[[ServerProcess], Any]:
    """``client_for(server)``: a boto3 SQS client of this test's project."""
    return lambda server: sqs_client(server.url, project)


@pytest.fixture
def sqs(sqs_server: ServerProcess, project: str) -> Any:
    """A boto3 SQS client of this test's project, on each backend's server."""
    return sqs_client(sqs_server.url, project)


def server_log_clean(server: ServerProcess, start: int) -> None:
    log = server.log_path
    if log is None or not log.exists():
        return
    with open(log, "rb") as fh:
        fh.seek(start)
        new = fh.read().decode("utf-8", "replace")
    assert "Traceback" not in new, new[-4000:]


def log_size(server: ServerProcess) -> int:
    log = server.log_path
    return log.stat().st_size if log is not None and log.exists() else 0
