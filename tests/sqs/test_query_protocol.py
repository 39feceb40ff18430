"""SQS's older query protocol (form-encoded ``Action=...``, XML answers),
spoken by a real client: today's botocore given the SQS service model of
botocore 1.29 (from PyPI), the last that described SQS with the query
protocol, so its own query serializer and XML parser make and read the
requests, as SDKs of that time do."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import pytest

from tests.sqs.conftest import NO_RETRIES, REGION, log_size, server_log_clean
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
MODEL_RELEASE = "1.29.165"
MODEL_ROOT = REPO / ".cache" / f"botocore-{MODEL_RELEASE}-sqs"
MODEL = MODEL_ROOT / "sqs" / "2012-11-05" / "service-2.json"


def query_model_root() -> Path:
    """A botocore data directory holding the query-protocol SQS model,
    extracted once from the botocore release on PyPI and kept in .cache."""
    if MODEL.exists():
        return MODEL_ROOT
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        f"botocore=={MODEL_RELEASE}", "-d", scratch],
                       check=True, capture_output=True, timeout=600)
        wheel = next(Path(scratch).glob("botocore-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            model = archive.read("botocore/data/sqs/2012-11-05/service-2.json")
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    partial = MODEL.with_name(f"service-2.json.tmp{os.getpid()}")
    partial.write_bytes(model)
    partial.rename(MODEL)
    return MODEL_ROOT


@pytest.fixture(scope="module")
def model_root() -> Path:
    try:
        return query_model_root()
    except Exception as exc:  # noqa: BLE001 - no network, no pip
        if os.environ.get("CI") == "true":
            pytest.fail(f"the query-protocol SQS model must be fetched under CI: {exc}",
                        pytrace=False)
        pytest.skip(f"the query-protocol SQS model could not be fetched: {exc}")


@pytest.fixture(autouse=True)
def no_server_tracebacks(sqlite_server: ServerProcess) -> Iterator[None]:
    start = log_size(sqlite_server)
    yield
    server_log_clean(sqlite_server, start)


@pytest.fixture
def sqs(model_root: Path, sqlite_server: ServerProcess, project: str) -> Any:
    session = botocore.session.Session()
    session.set_config_variable("data_path", str(model_root))
    client = session.create_client("sqs", endpoint_url=sqlite_server.url, region_name=REGION,
                                   aws_access_key_id=project,
                                   aws_secret_access_key="unused", config=NO_RETRIES)
    assert client.meta.service_model.protocol == "query"
    return client


def test_queues_attributes_and_tags(sqs: Any, project: str) -> None:
    url = sqs.create_queue(QueueName="old", Attributes={"DelaySeconds": "0",
                                                       "VisibilityTimeout": "120"},
                           tags={"team": "a"})["QueueUrl"]
    assert url.endswith(f"/{project}/old")
    assert sqs.get_queue_url(QueueName="old")["QueueUrl"] == url
    assert sqs.list_queues(QueueNamePrefix="o")["QueueUrls"] == [url]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "600"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout",
                                                                 "MessageRetentionPeriod"])
    assert got["Attributes"] == {"VisibilityTimeout": "120", "MessageRetentionPeriod": "600"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a", "env": "test"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    sqs.purge_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="old")


def test_messages(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="old-messages")["QueueUrl"]
    attributes = {"kind": {"DataType": "String", "StringValue": "order"},
                  "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01<&>"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="<hello & welcome>",
                            MessageAttributes=attributes)
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "a", "DelaySeconds": 0},
        {"Id": "b", "MessageBody": "\x00"}])
    assert [e["Id"] for e in batch["Successful"]] == ["a"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in batch["Failed"]] == [
        ("b", "InvalidMessageContents", True)]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                              MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["<hello & welcome>", "a"]
    assert got[0]["MessageId"] == sent["MessageId"]
    assert got[0]["MessageAttributes"] == attributes
    assert got[0]["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 300}])
    assert [e["Id"] for e in changed["Successful"]] == ["x"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[1]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in again] == ["a"]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "1", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "2", "ReceiptHandle": "junk-handle"}])
    assert [e["Id"] for e in deleted["Successful"]] == ["1"]
    assert [(e["Id"], e["Code"]) for e in deleted["Failed"]] == [("2", "ReceiptHandleIsInvalid")]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_errors_are_xml(sqs: Any, sqlite_server: ServerProcess, project: str) -> None:
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        url = sqs.create_queue(QueueName="old-errors")["QueueUrl"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle="bm90LWEtaGFuZGxl")
    answer = httpx.post(sqlite_server.url, content=b"Action=Frobnicate&Version=2012-11-05",
                        timeout=10, headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "Authorization": f"AWS4-HMAC-SHA256 Credential={project}/20260101/"
                                             "us-east-1/sqs/aws4_request, "
                                             "SignedHeaders=host, Signature=00"})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/xml")
    assert "<Code>InvalidAction</Code>" in answer.text
    assert "<Type>Sender</Type>" in answer.text


def test_a_zaqar_body_xml_cannot_carry(sqs: Any, sqlite_server: ServerProcess,
                                       project: str) -> None:
    url = sqs.create_queue(QueueName="old-control")["QueueUrl"]
    posted = httpx.post(f"{sqlite_server.url}/v2/queues/old-control/messages", timeout=10,
                        json={"messages": [{"body": "bell\u0007"}]},
                        headers={"X-Project-ID": project,
                                 "Client-ID": "3a1f5e0c-8f4e-4e59-9a43-6f7c1d0e2b13"})
    assert posted.status_code == 201
    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "bell\ufffd"
    assert message["MD5OfBody"] == hashlib.md5("bell\ufffd".encode()).hexdigest()
