"""Every SQS action through boto3 from PyPI, against a real server on each
backend (SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from typing import Any

import pytest

from tests.sqs.conftest import log_size, server_log_clean
from tests.support.server import ServerProcess


@pytest.fixture(autouse=True)
def no_server_tracebacks(sqs_server: ServerProcess) -> Any:
    start = log_size(sqs_server)
    yield
    server_log_clean(sqs_server, start)


def attributes_md5(attributes: dict[str, dict[str, Any]]) -> str:
    """MD5OfMessageAttributes, written here from AWS's description of it, to
    check the server's independently."""
    out = b""
    for name in sorted(attributes):
        value = attributes[name]

        def field(data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + data

        out += field(name.encode()) + field(value["DataType"].encode())
        if "BinaryValue" in value:
            out += b"\x02" + field(value["BinaryValue"])
        else:
            out += b"\x01" + field(value["StringValue"].encode())
    return hashlib.md5(out).hexdigest()


def test_queue_lifecycle(sqs: Any, project: str) -> None:
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    assert url.endswith(f"/{project}/jobs")
    # Creating it again with the same attributes is no error.
    assert sqs.create_queue(QueueName="jobs")["QueueUrl"] == url
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == url
    assert sqs.list_queues()["QueueUrls"] == [url]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.get_queue_url(QueueName="jobs")
    assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_list_queues_prefix_and_pages(sqs: Any) -> None:
    names = [f"alpha-{i:02d}" for i in range(25)] + ["beta-1", "gamma-alpha"]
    for name in names:
        sqs.create_queue(QueueName=name)
    assert len(sqs.list_queues()["QueueUrls"]) == 27
    prefixed = sqs.list_queues(QueueNamePrefix="alpha")["QueueUrls"]
    assert [u.rsplit("/", 1)[1] for u in prefixed] == sorted(names[:25])
    seen: list[str] = []
    kwargs: dict[str, Any] = {"QueueNamePrefix": "alpha", "MaxResults": 10}
    while True:
        page = sqs.list_queues(**kwargs)
        seen += page["QueueUrls"]
        assert len(page["QueueUrls"]) <= 10
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert seen == prefixed


def test_attributes_get_set(sqs: Any, project: str) -> None:
    url = sqs.create_queue(QueueName="attrs", Attributes={
        "DelaySeconds": "5", "MessageRetentionPeriod": "600", "VisibilityTimeout": "90",
        "MaximumMessageSize": "2048", "ReceiveMessageWaitTimeSeconds": "1"})["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert got["DelaySeconds"] == "5"
    assert got["MessageRetentionPeriod"] == "600"
    assert got["VisibilityTimeout"] == "90"
    assert got["MaximumMessageSize"] == "2048"
    assert got["ReceiveMessageWaitTimeSeconds"] == "1"
    assert got["QueueArn"] == f"arn:aws:sqs:us-east-1:{project}:attrs"
    assert got["ApproximateNumberOfMessages"] == "0"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0",
                                                        "VisibilityTimeout": "120"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds",
                                                                 "VisibilityTimeout"])
    assert got["Attributes"] == {"DelaySeconds": "0", "VisibilityTimeout": "120"}
    # A different attribute value makes a second create an error.
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName="attrs", Attributes={"DelaySeconds": "7"})


def test_send_receive_delete_with_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    attributes = {"colour": {"DataType": "String", "StringValue": "blue"},
                  "count": {"DataType": "Number", "StringValue": "3"},
                  "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
                  "trace.id": {"DataType": "String.custom", "StringValue": "t-1"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="héllo", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == attributes_md5(attributes)
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"],
                              MessageSystemAttributeNames=["All"])["Messages"]
    assert len(got) == 1
    message = got[0]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "héllo"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == attributes_md5(attributes)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(message["Attributes"]["SentTimestamp"]) > 1_600_000_000_000
    # Received: invisible to the next receive until deleted or released.
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert counts == {"ApproximateNumberOfMessages": "0",
                      "ApproximateNumberOfMessagesNotVisible": "0"}


def test_selected_message_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="select")["QueueUrl"]
    attributes = {"a.one": {"DataType": "String", "StringValue": "1"},
                  "a.two": {"DataType": "String", "StringValue": "2"},
                  "b": {"DataType": "String", "StringValue": "3"}}
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attributes)
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["a.*"],
                                  AttributeNames=["SentTimestamp"])["Messages"][0]
    assert set(message["MessageAttributes"]) == {"a.one", "a.two"}
    assert message["MD5OfMessageAttributes"] == attributes_md5(
        {k: attributes[k] for k in ("a.one", "a.two")})
    assert set(message["Attributes"]) == {"SentTimestamp"}


def test_batches(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="batch")["QueueUrl"]
    sent = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(10)])
    assert sorted(e["Id"] for e in sent["Successful"]) == sorted(f"m{i}" for i in range(10))
    assert sent.get("Failed", []) == []
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in received) == sorted(f"body {i}" for i in range(10))
    # One bad entry fails alone; the others go through.
    mixed = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "good", "MessageBody": "fine"}, {"Id": "bad", "MessageBody": "\x00"}])
    assert [e["Id"] for e in mixed["Successful"]] == ["good"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in mixed["Failed"]] == [
        ("bad", "InvalidMessageContents", True)]
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": f"c{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 600}
        for i, m in enumerate(received[:5])] + [
        {"Id": "junk", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 600}])
    assert len(changed["Successful"]) == 5
    assert [(e["Id"], e["Code"]) for e in changed["Failed"]] == [
        ("junk", "ReceiptHandleIsInvalid")]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)])
    assert len(deleted["Successful"]) == 10
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["fine"]


def test_visibility_timeout(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="vis")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    # VisibilityTimeout 0: received, and at once visible again.
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0,
                                AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    second = sqs.receive_message(QueueUrl=url, VisibilityTimeout=300,
                                 AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    # Extended, then released with ChangeMessageVisibility 0.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"],
                                  VisibilityTimeout=1200)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"],
                                  VisibilityTimeout=0)
    third = sqs.receive_message(QueueUrl=url)["Messages"][0]
    # The older receipt no longer holds the message: changing it fails,
    # deleting with it leaves the message to its new receiver.
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"],
                                      VisibilityTimeout=100)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessagesNotVisible"])["Attributes"] == {
        "ApproximateNumberOfMessagesNotVisible": "1"}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=third["ReceiptHandle"])
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessagesNotVisible"] == "0"


def test_each_received_message_has_its_own_visibility(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="own")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 2
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == [got[0]["Body"]]


def test_delay(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="later")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "MessageBody": "also later", "DelaySeconds": 600}])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    sqs.send_message(QueueUrl=url, MessageBody="now", DelaySeconds=0)
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url,
                                                   MaxNumberOfMessages=10)["Messages"]] == ["now"]


def test_long_polling(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="poll")["QueueUrl"]
    # Nothing comes: the receive waits its second, then answers empty.
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    result: dict[str, Any] = {}

    def receive() -> None:
        result.update(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))

    waiter = threading.Thread(target=receive)
    waiter.start()
    sqs.send_message(QueueUrl=url, MessageBody="wake up")
    waiter.join(30)
    assert [m["Body"] for m in result["Messages"]] == ["wake up"]


def test_purge(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="purge")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": str(i)} for i in range(3)])
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert sqs.get_queue_url(QueueName="purge")["QueueUrl"] == url


def test_tags(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="tagged", tags={"team": "a"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test", "team": "b"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "b", "env": "test"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team", "absent"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["env"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)


def test_redrive_policy_dead_letters_and_move_task(sqs: Any, project: str) -> None:
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    stored = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert stored == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    # Received maxReceiveCount times: the next receive moves it.
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "1"
    task = sqs.start_message_move_task(SourceArn=dlq_arn)
    # The move is done by the time it answers; the task is listed, finished.
    (listed,) = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    assert listed["TaskHandle"] == task["TaskHandle"]
    assert (listed["Status"], listed["ApproximateNumberOfMessagesMoved"]) == ("COMPLETED", 1)
    with pytest.raises(sqs.exceptions.UnsupportedOperation):
        sqs.cancel_message_move_task(TaskHandle=task["TaskHandle"])
    back = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    assert [m["Body"] for m in back["Messages"]] == ["poison"]
    assert back["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"
    # An empty RedrivePolicy removes it.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url,
                                                        AttributeNames=["RedrivePolicy"])
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == []


def test_post_to_the_queue_url(sqs: Any, sqs_server: ServerProcess, project: str) -> None:
    """SDKs may send a queue's actions to the queue's URL."""
    url = sqs.create_queue(QueueName="direct")["QueueUrl"]
    from tests.sqs.conftest import sqs_client

    direct = sqs_client(url, project)
    direct.send_message(QueueUrl=url, MessageBody="via url")
    assert [m["Body"] for m in direct.receive_message(QueueUrl=url)["Messages"]] == ["via url"]


def test_binary_attribute_is_base64_in_zaqar(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="bin")["QueueUrl"]
    blob = bytes(range(256))
    sqs.send_message(QueueUrl=url, MessageBody="b", MessageAttributes={
        "raw": {"DataType": "Binary", "BinaryValue": blob}})
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["raw"])["Messages"][0]
    assert got["MessageAttributes"]["raw"]["BinaryValue"] == blob
    assert base64.b64encode(blob)  # what the Zaqar view holds (test_cross_protocol)
