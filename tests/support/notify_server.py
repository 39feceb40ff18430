"""A second session server for the subscription, topic, long-polling,
encryption and pipeline tests: it allows webhooks to 127.0.0.1, has an
encryption key, a known confirmation signing secret and the JSON schema
stage of examples/. Its delivery worker is off, so deliveries stay where
the API put them for the tests to inspect."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "test-confirmation-secret"
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()


@dataclass
class NotifyServer:
    process: ServerProcess
    db_path: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def log_path(self) -> Path:
        assert self.process.log_path is not None
        return self.process.log_path


@pytest.fixture(scope="session")
def notify_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyServer]:
    base = tmp_path_factory.mktemp("notify-server")
    db_path = base / "tidings.db"
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = ServerProcess(
        storage=f"sqlite:///{db_path}",
        log_path=base / "server.log",
        env={
            "PYTHONPATH": python_path,
            "TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
            "TIDINGS_NOTIFICATIONS__SIGNING_SECRET": SIGNING_SECRET,
            "TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER": "false",
            "TIDINGS_ENCRYPTION__KEY": ENCRYPTION_KEY,
            "TIDINGS_MESSAGE_PIPELINE": "examples.json_schema_stage:JsonSchemaStage",
        },
    )
    proc.start()
    yield NotifyServer(proc, db_path)
    proc.stop()


@pytest.fixture
def nhttp(notify_server: NotifyServer, headers: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client for the notify server, in this test's project."""
    with httpx.Client(base_url=notify_server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(autouse=False)
def notify_log_clean(notify_server: NotifyServer) -> Iterator[None]:
    """No test may make the notify server log a traceback."""
    log = notify_server.log_path
    start = log.stat().st_size if log.exists() else 0
    yield
    with open(log, "rb") as fh:
        fh.seek(start)
        new = fh.read().decode("utf-8", "replace")
    assert "Traceback" not in new, new[-4000:]
