"""Bad SQS requests, raw over HTTP: each is answered with SQS's error
shape (``__type``, the ``x-amzn-query-error`` legacy code, SQS's status),
never with a 500 nor a trace in the server's log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.sqs.conftest import log_size, server_log_clean, sqs_client
from tests.support.server import ServerProcess

QUEUE_CODE = "AWS.SimpleQueueService.NonExistentQueue"


@dataclass
class Setup:
    """A project with queues ``exists`` and ``other``, receipts of a
    message in ``exists``, and of a deleted one."""

    server: ServerProcess
    project: str
    url: str
    other_url: str
    handle: str
    deleted_handle: str
    dlq_arn: str


@pytest.fixture(scope="module")
def setup(sqlite_server: ServerProcess) -> Setup:
    project = f"bad{uuid.uuid4().hex[:10]}"
    sqs = sqs_client(sqlite_server.url, project)
    url = sqs.create_queue(QueueName="exists")["QueueUrl"]
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "a"},
                                                  {"Id": "b", "MessageBody": "b"}])
    first, second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])
    return Setup(sqlite_server, project, url, other, first["ReceiptHandle"],
                 second["ReceiptHandle"], arn["Attributes"]["QueueArn"])


@pytest.fixture(autouse=True)
def no_server_tracebacks(sqlite_server: ServerProcess) -> Iterator[None]:
    start = log_size(sqlite_server)
    yield
    server_log_clean(sqlite_server, start)


def signed_headers(project: str, action: str) -> dict[str, str]:
    # Under noauth only the access key of the credential matters.
    return {
        "X-Amz-Target": f"AmazonSQS.{action}",
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Date": "20260101T000000Z",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={project}/20260101/us-east-1/sqs/"
                         "aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    }


def big(n: int) -> str:
    return "x" * n


# (id, action, parameters (a function of the setup), expected shape, status)
CASES: list[tuple[str, str, Any, str, int]] = [
    ("unknown action", "Frobnicate", lambda s: {}, "InvalidAction", 400),
    ("unsupported action", "AddPermission",
     lambda s: {"QueueUrl": s.url, "Label": "l", "AWSAccountIds": ["1"], "Actions": ["*"]},
     "UnsupportedOperation", 400),
    ("create: no name", "CreateQueue", lambda s: {}, "MissingParameter", 400),
    ("create: name not a string", "CreateQueue", lambda s: {"QueueName": 7},
     "InvalidParameterValue", 400),
    ("create: bad character", "CreateQueue", lambda s: {"QueueName": "a b"},
     "InvalidParameterValue", 400),
    ("create: 81 characters", "CreateQueue", lambda s: {"QueueName": big(81)},
     "InvalidParameterValue", 400),
    ("create: FIFO", "CreateQueue", lambda s: {"QueueName": "q.fifo"},
     "UnsupportedOperation", 400),
    ("create: visibility too long", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"VisibilityTimeout": "43201"}},
     "InvalidAttributeValue", 400),
    ("create: delay not a number", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"DelaySeconds": "soon"}},
     "InvalidAttributeValue", 400),
    ("create: retention too short", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"MessageRetentionPeriod": "59"}},
     "InvalidAttributeValue", 400),
    ("create: Policy cannot be honoured", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"Policy": "{}"}}, "InvalidAttributeName", 400),
    ("create: KMS cannot be honoured", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"KmsMasterKeyId": "alias/aws/sqs"}},
     "InvalidAttributeName", 400),
    ("create: unknown attribute", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"Colour": "blue"}},
     "InvalidAttributeName", 400),
    ("create: FifoQueue true", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"FifoQueue": "true"}},
     "InvalidAttributeValue", 400),
    ("create: RedrivePolicy not JSON", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"RedrivePolicy": "{"}},
     "InvalidParameterValue", 400),
    ("create: RedrivePolicy without maxReceiveCount", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"RedrivePolicy": json.dumps(
         {"deadLetterTargetArn": s.dlq_arn})}}, "InvalidParameterValue", 400),
    ("create: RedrivePolicy count 0", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"RedrivePolicy": json.dumps(
         {"deadLetterTargetArn": s.dlq_arn, "maxReceiveCount": 0})}},
     "InvalidParameterValue", 400),
    ("create: dead letter queue missing", "CreateQueue",
     lambda s: {"QueueName": "n1", "Attributes": {"RedrivePolicy": json.dumps(
         {"deadLetterTargetArn": s.dlq_arn + "-gone", "maxReceiveCount": 3})}},
     "InvalidParameterValue", 400),
    ("create: exists, other attributes", "CreateQueue",
     lambda s: {"QueueName": "exists", "Attributes": {"DelaySeconds": "9"}},
     "QueueNameExists", 400),
    ("url of a missing queue", "GetQueueUrl", lambda s: {"QueueName": "missing"},
     "QueueDoesNotExist", 400),
    ("delete a missing queue", "DeleteQueue",
     lambda s: {"QueueUrl": s.url.replace("/exists", "/missing")}, "QueueDoesNotExist", 400),
    ("queue URL without a queue", "SendMessage",
     lambda s: {"QueueUrl": "http://127.0.0.1/just-one", "MessageBody": "x"},
     "InvalidAddress", 404),
    ("another project's queue", "SendMessage",
     lambda s: {"QueueUrl": s.url.replace(s.project, "someone-else"), "MessageBody": "x"},
     "QueueDoesNotExist", 400),
    ("QueueUrl not a string", "SendMessage", lambda s: {"QueueUrl": 5, "MessageBody": "x"},
     "InvalidParameterValue", 400),
    ("send: no body", "SendMessage", lambda s: {"QueueUrl": s.url}, "MissingParameter", 400),
    ("send: empty body", "SendMessage", lambda s: {"QueueUrl": s.url, "MessageBody": ""},
     "InvalidParameterValue", 400),
    ("send: NUL in the body", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "a\x00b"}, "InvalidMessageContents", 400),
    ("send: delay 901", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x", "DelaySeconds": 901},
     "InvalidParameterValue", 400),
    ("send: body over 256 KiB", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": big(256 * 1024 + 1)},
     "InvalidParameterValue", 400),
    ("send: attribute type unknown", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x",
                "MessageAttributes": {"a": {"DataType": "Date", "StringValue": "x"}}},
     "InvalidParameterValue", 400),
    ("send: Number that is not", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x",
                "MessageAttributes": {"a": {"DataType": "Number", "StringValue": "many"}}},
     "InvalidParameterValue", 400),
    ("send: reserved attribute name", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x",
                "MessageAttributes": {"AWS.x": {"DataType": "String", "StringValue": "v"}}},
     "InvalidParameterValue", 400),
    ("send: 11 attributes", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x", "MessageAttributes": {
         f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}},
     "InvalidParameterValue", 400),
    ("send: binary attribute not base64", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x",
                "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": "@@@"}}},
     "InvalidParameterValue", 400),
    ("send: MessageGroupId on a standard queue", "SendMessage",
     lambda s: {"QueueUrl": s.url, "MessageBody": "x", "MessageGroupId": "g"},
     "InvalidParameterValue", 400),
    ("batch: empty", "SendMessageBatch", lambda s: {"QueueUrl": s.url, "Entries": []},
     "EmptyBatchRequest", 400),
    ("batch: no entries", "SendMessageBatch", lambda s: {"QueueUrl": s.url},
     "MissingParameter", 400),
    ("batch: 11 entries", "SendMessageBatch",
     lambda s: {"QueueUrl": s.url, "Entries": [
         {"Id": f"e{i}", "MessageBody": "x"} for i in range(11)]},
     "TooManyEntriesInBatchRequest", 400),
    ("batch: ids repeated", "SendMessageBatch",
     lambda s: {"QueueUrl": s.url, "Entries": [{"Id": "e", "MessageBody": "x"},
                                               {"Id": "e", "MessageBody": "y"}]},
     "BatchEntryIdsNotDistinct", 400),
    ("batch: bad id", "SendMessageBatch",
     lambda s: {"QueueUrl": s.url, "Entries": [{"Id": "a b", "MessageBody": "x"}]},
     "InvalidBatchEntryId", 400),
    ("batch: too long altogether", "SendMessageBatch",
     lambda s: {"QueueUrl": s.url, "Entries": [
         {"Id": f"e{i}", "MessageBody": big(100 * 1024)} for i in range(3)]},
     "BatchRequestTooLong", 400),
    ("batch delete: empty", "DeleteMessageBatch", lambda s: {"QueueUrl": s.url, "Entries": []},
     "EmptyBatchRequest", 400),
    ("receive: 11 messages", "ReceiveMessage",
     lambda s: {"QueueUrl": s.url, "MaxNumberOfMessages": 11}, "InvalidParameterValue", 400),
    ("receive: 0 messages", "ReceiveMessage",
     lambda s: {"QueueUrl": s.url, "MaxNumberOfMessages": 0}, "InvalidParameterValue", 400),
    ("receive: wait 21 s", "ReceiveMessage",
     lambda s: {"QueueUrl": s.url, "WaitTimeSeconds": 21}, "InvalidParameterValue", 400),
    ("receive: visibility -1", "ReceiveMessage",
     lambda s: {"QueueUrl": s.url, "VisibilityTimeout": -1}, "InvalidParameterValue", 400),
    ("receive: wait as text", "ReceiveMessage",
     lambda s: {"QueueUrl": s.url, "WaitTimeSeconds": "5"}, "InvalidParameterValue", 400),
    ("delete: made-up receipt", "DeleteMessage",
     lambda s: {"QueueUrl": s.url, "ReceiptHandle": "bm90LWEtaGFuZGxl"},
     "ReceiptHandleIsInvalid", 400),
    ("delete: altered receipt", "DeleteMessage",
     lambda s: {"QueueUrl": s.url, "ReceiptHandle": s.handle[:-2] + (
         "AA" if s.handle[-2:] != "AA" else "BB")}, "ReceiptHandleIsInvalid", 400),
    ("delete: receipt of another queue", "DeleteMessage",
     lambda s: {"QueueUrl": s.other_url, "ReceiptHandle": s.handle},
     "ReceiptHandleIsInvalid", 400),
    ("delete: no receipt", "DeleteMessage", lambda s: {"QueueUrl": s.url},
     "MissingParameter", 400),
    ("visibility: message gone", "ChangeMessageVisibility",
     lambda s: {"QueueUrl": s.url, "ReceiptHandle": s.deleted_handle, "VisibilityTimeout": 60},
     "MessageNotInflight", 400),
    ("visibility: no timeout", "ChangeMessageVisibility",
     lambda s: {"QueueUrl": s.url, "ReceiptHandle": s.handle}, "MissingParameter", 400),
    ("visibility: 43201 s", "ChangeMessageVisibility",
     lambda s: {"QueueUrl": s.url, "ReceiptHandle": s.handle, "VisibilityTimeout": 43201},
     "InvalidParameterValue", 400),
    ("attributes: unknown name", "GetQueueAttributes",
     lambda s: {"QueueUrl": s.url, "AttributeNames": ["Colour"]}, "InvalidAttributeName", 400),
    ("attributes: set a read-only one", "SetQueueAttributes",
     lambda s: {"QueueUrl": s.url, "Attributes": {"QueueArn": "arn:aws:sqs:x:y:z"}},
     "InvalidAttributeName", 400),
    ("attributes: set none", "SetQueueAttributes", lambda s: {"QueueUrl": s.url},
     "MissingParameter", 400),
    ("list: 1001 results", "ListQueues", lambda s: {"MaxResults": 1001},
     "InvalidParameterValue", 400),
    ("tag: no tags", "TagQueue", lambda s: {"QueueUrl": s.url}, "MissingParameter", 400),
    ("tag: key too long", "TagQueue",
     lambda s: {"QueueUrl": s.url, "Tags": {big(129): "v"}}, "InvalidParameterValue", 400),
    ("move: not an ARN", "StartMessageMoveTask", lambda s: {"SourceArn": "queue"},
     "InvalidParameterValue", 400),
    ("move: missing queue", "StartMessageMoveTask",
     lambda s: {"SourceArn": s.dlq_arn + "-gone"}, "ResourceNotFoundException", 404),
    ("move tasks of a missing queue", "ListMessageMoveTasks",
     lambda s: {"SourceArn": s.dlq_arn + "-gone"}, "ResourceNotFoundException", 404),
    ("cancel an unknown task", "CancelMessageMoveTask", lambda s: {"TaskHandle": "nope"},
     "ResourceNotFoundException", 404),
    ("move: not a dead letter queue", "StartMessageMoveTask",
     lambda s: {"SourceArn": s.dlq_arn}, "InvalidParameterValue", 400),
]


@pytest.mark.parametrize(("action", "params", "shape", "status"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_request(setup: Setup, action: str, params: Any, shape: str, status: int) -> None:
    answer = httpx.post(setup.server.url, headers=signed_headers(setup.project, action),
                        content=json.dumps(params(setup)), timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/x-amz-json-1.0"
    body = answer.json()
    assert body["__type"] == f"com.amazonaws.sqs#{shape}"
    assert body["message"]
    legacy = answer.headers["x-amzn-query-error"]
    assert legacy.endswith(";Sender")
    if shape == "QueueDoesNotExist":
        assert legacy == f"{QUEUE_CODE};Sender"


RAW_CASES = [
    ("body not JSON", {"X-Amz-Target": "AmazonSQS.ListQueues"}, b"{nope", "InvalidParameterValue",
     400),
    ("body a JSON array", {"X-Amz-Target": "AmazonSQS.ListQueues"}, b"[]",
     "InvalidParameterValue", 400),
    ("no action at all", {}, b"{}", "InvalidAction", 400),
]


@pytest.mark.parametrize(("headers", "body", "shape", "status"),
                         [case[1:] for case in RAW_CASES], ids=[case[0] for case in RAW_CASES])
def test_bad_envelope(setup: Setup, headers: dict[str, str], body: bytes, shape: str,
                      status: int) -> None:
    sent = {**signed_headers(setup.project, "ListQueues"), **headers}
    if "X-Amz-Target" not in headers:
        del sent["X-Amz-Target"]
    if "Content-Type" in headers:
        sent["Content-Type"] = headers["Content-Type"]
    answer = httpx.post(setup.server.url, headers=sent, content=body, timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.json()["__type"] == f"com.amazonaws.sqs#{shape}"


@pytest.mark.parametrize(("authorization", "shape"), [
    (None, "MissingAuthenticationToken"),
    ("Basic dXNlcjpwYXNz", "IncompleteSignature"),
    ("AWS4-HMAC-SHA256 Credential=only-a-key, SignedHeaders=host, Signature=00",
     "IncompleteSignature"),
], ids=["unsigned", "not SigV4", "credential without scope"])
def test_unsigned_requests_are_refused(setup: Setup, authorization: str | None,
                                       shape: str) -> None:
    headers = signed_headers(setup.project, "ListQueues")
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = httpx.post(setup.server.url, headers=headers, content=b"{}", timeout=10)
    assert answer.json()["__type"] == f"com.amazonaws.sqs#{shape}"
    assert answer.status_code == (403 if shape == "MissingAuthenticationToken" else 400)


def test_zaqar_paths_are_not_sqs(setup: Setup) -> None:
    """A POST to a Zaqar path that takes none is still the Zaqar API's 405."""
    answer = httpx.post(setup.server.url + "/v2/ping", headers={"X-Project-ID": "p"},
                        timeout=10)
    assert answer.status_code == 405


@pytest.mark.parametrize("path", ["/some-account/some-queue", "/v2/nothing-here"])
def test_other_methods_on_queue_urls_are_not_found(setup: Setup, path: str) -> None:
    answer = httpx.get(setup.server.url + path, headers={"X-Project-ID": "p"}, timeout=10)
    assert answer.status_code == 404
