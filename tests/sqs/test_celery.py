"""Celery with the ``sqs://`` broker (kombu's SQS transport, boto3 and
pycurl from PyPI) runs a real task end to end through Tidings: the test
sends the task, a real worker process receives it over SQS, runs it and
sends its result to a reply queue the test reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sqs.conftest import sqs_client
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def celery_env(sqlite_server: ServerProcess) -> dict[str, str]:
    project = f"celery{uuid.uuid4().hex[:8]}"
    return {"SQS_TEST_BROKER": f"sqs://{project}:unused@127.0.0.1:{sqlite_server.port}",
            "SQS_TEST_QUEUE": "tasks", "SQS_TEST_PROJECT": project}


@pytest.fixture(scope="module")
def worker(celery_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[subprocess.Popen[bytes]]:
    """One Celery worker process for the module."""
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {**os.environ, **celery_env, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.sqs.celery_app", "worker",
             "--pool", "solo", "--without-heartbeat", "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]


def receive_one(sqs: Any, url: str, attempts: int = 6) -> dict[str, Any]:
    """Long-poll ``url`` until a message comes (each poll waits up to 20 s
    on the server, so nothing here sleeps)."""
    for _ in range(attempts):
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        if got.get("Messages"):
            return got["Messages"][0]
    raise AssertionError(f"nothing arrived on {url}")


def test_a_task_runs_through_tidings(sqlite_server: ServerProcess, celery_env: dict[str, str],
                                     worker: subprocess.Popen[bytes],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in celery_env.items():
        monkeypatch.setenv(name, value)
    from tests.sqs import celery_app

    celery_app.app.conf.broker_url = celery_env["SQS_TEST_BROKER"]
    project = celery_env["SQS_TEST_PROJECT"]
    sqs = sqs_client(sqlite_server.url, project)
    reply = sqs.create_queue(QueueName="replies")["QueueUrl"]
    celery_app.add.apply_async((20, 22, reply, sqlite_server.url, project), queue="tasks")
    answer = receive_one(sqs, reply)
    assert answer["Body"] == "42"
    sqs.delete_message(QueueUrl=reply, ReceiptHandle=answer["ReceiptHandle"])
    assert worker.poll() is None
    # The worker deleted the task message once it ran.
    tasks = sqs.get_queue_url(QueueName="tasks")["QueueUrl"]
    counts = sqs.get_queue_attributes(QueueUrl=tasks, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "0"
