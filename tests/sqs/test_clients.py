"""Other clients on the same queues: python-zaqarclient reads what boto3
sent and the reverse, and the aws CLI (awscli from PyPI) does a round
trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from zaqarclient.queues.v2.client import Client

from tests.sqs.conftest import log_size, server_log_clean, sqs_client
from tests.support.server import ServerProcess


@pytest.fixture(autouse=True)
def no_server_tracebacks(sqlite_server: ServerProcess) -> Any:
    start = log_size(sqlite_server)
    yield
    server_log_clean(sqlite_server, start)


def zaqar(server: ServerProcess, project: str) -> Client:
    conf: dict = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    return Client(server.url, version=2, conf=conf)


def test_sent_with_boto3_claimed_with_zaqarclient(sqlite_server: ServerProcess,
                                                  project: str) -> None:
    sqs = sqs_client(sqlite_server.url, project)
    url = sqs.create_queue(QueueName="shared", Attributes={
        "MessageRetentionPeriod": "1200"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="plain text")
    sqs.send_message(QueueUrl=url, MessageBody="with attributes", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "order"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x01\x02"}})
    queue = zaqar(sqlite_server, project).queue("shared", auto_create=False)
    # The queue's SQS attributes are its Zaqar metadata.
    assert queue.metadata(force_reload=True)["_default_message_ttl"] == 1200
    claimed = list(queue.claim(ttl=60, grace=60, limit=10))
    assert [m.body for m in claimed] == [
        "plain text",
        {"Body": "with attributes", "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "order"},
            "raw": {"DataType": "Binary", "BinaryValue": "AQI="}}},
    ]
    assert [m.ttl for m in claimed] == [1200, 1200]
    for message in claimed:
        message.delete()
    assert queue.stats["messages"]["total"] == 0


def test_posted_with_zaqarclient_received_with_boto3(sqlite_server: ServerProcess,
                                                     project: str) -> None:
    queue = zaqar(sqlite_server, project).queue("from-zaqar", force_create=True)
    queue.post([{"body": "text", "ttl": 300}, {"body": {"event": "created", "id": 7}},
                {"body": [1, 2]}])
    sqs = sqs_client(sqlite_server.url, project)
    url = sqs.get_queue_url(QueueName="from-zaqar")["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["text", json.dumps({"event": "created", "id": 7},
                                                           separators=(",", ":")), "[1,2]"]
    # Claimed through SQS: Zaqar sees them claimed, then gone.
    assert queue.stats["messages"]["claimed"] == 3
    sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert queue.stats["messages"]["total"] == 0


def aws(server: ServerProcess, project: str, *args: str) -> Any:
    """Run the aws CLI (its JSON output decoded) with this project's key."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": project, "AWS_SECRET_ACCESS_KEY": "unused",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", server.url,
                           "--output", "json", "sqs", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_aws_cli_round_trip(sqlite_server: ServerProcess, project: str) -> None:
    url = aws(sqlite_server, project, "create-queue", "--queue-name", "cli")["QueueUrl"]
    sent = aws(sqlite_server, project, "send-message", "--queue-url", url,
               "--message-body", "from the cli")
    got = aws(sqlite_server, project, "receive-message", "--queue-url", url,
              "--attribute-names", "All")["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in got] == [(sent["MessageId"], "from the cli")]
    aws(sqlite_server, project, "delete-message", "--queue-url", url,
        "--receipt-handle", got[0]["ReceiptHandle"])
    sqs = sqs_client(sqlite_server.url, project)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    aws(sqlite_server, project, "delete-queue", "--queue-url", url)
    assert "QueueUrls" not in sqs.list_queues()


def test_metrics_name_each_action(sqlite_server: ServerProcess, project: str) -> None:
    """SQS requests are counted per action, not all as "POST /"."""
    sqs_client(sqlite_server.url, project).list_queues()
    metrics = httpx.get(sqlite_server.url + "/metrics", timeout=10).text
    assert any('route="sqs:ListQueues"' in line and 'status="200"' in line
               for line in metrics.splitlines()
               if line.startswith("tidings_http_requests_total")), metrics[-2000:]


def test_receipts_outlive_a_restart(tmp_path: Any, project: str) -> None:
    """Without any secret configured, a receipt handle from before a restart
    (or from another worker) is still accepted: its key comes from the
    settings every process shares, not from a random per-process key."""
    server = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                           log_path=tmp_path / "server.log")
    server.start()
    try:
        sqs = sqs_client(server.url, project)
        url = sqs.create_queue(QueueName="durable")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="survives")
        handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
        server.restart()
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=600)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"
    finally:
        server.stop()


def test_queue_urls_behind_a_proxy(sqlite_server: ServerProcess, project: str) -> None:
    """Queue URLs name the scheme and host the client reached, as a reverse
    proxy passes them (X-Forwarded-Proto, Host)."""
    answer = httpx.post(sqlite_server.url, timeout=10, content=b'{"QueueName": "proxied"}',
                        headers={
                            "X-Amz-Target": "AmazonSQS.CreateQueue",
                            "Content-Type": "application/x-amz-json-1.0",
                            "Host": "sqs.example.org", "X-Forwarded-Proto": "https",
                            "Authorization": f"AWS4-HMAC-SHA256 Credential={project}/20260101/"
                                             "us-east-1/sqs/aws4_request, "
                                             "SignedHeaders=host, Signature=00"})
    assert answer.json() == {"QueueUrl": f"https://sqs.example.org/{project}/proxied"}
