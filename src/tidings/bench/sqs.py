"""The SQS wire details the SQS roles need: AWS JSON 1.0 bodies and headers.

Built by hand rather than with an SDK so that the load generator stays
cheap: an SDK signs and validates every call, and would be measured instead
of the server. Kept apart from the load loops so it can be unit-tested
without a server.
"""

from __future__ import annotations

from urllib.parse import quote

from tidings.bench.zaqar import encode_json, json_object

CONTENT_TYPE = "application/x-amz-json-1.0"
# SQS's ceiling for SendMessageBatch entries and ReceiveMessage's
# MaxNumberOfMessages.
MAX_BATCH = 10


def headers(project: str) -> dict[str, str]:
    """Headers every SQS request carries. Under noauth the server takes the
    project from the access key id of the credential scope and checks no
    signature, so an unsigned header of the right shape is enough."""
    return {
        "Content-Type": CONTENT_TYPE,
        "Authorization": (f"AWS4-HMAC-SHA256 Credential={project}/20260101/us-east-1/sqs/"
                          "aws4_request, SignedHeaders=content-type;host, Signature=unsigned"),
        "Accept": "application/json",
        "User-Agent": "tidings-bench",
    }


def target(action: str) -> dict[str, str]:
    """The header that names the action."""
    return {"X-Amz-Target": f"AmazonSQS.{action}"}


def queue_url(base_url: str, project: str, queue: str) -> str:
    """``<base>/<account>/<queue>``: the account is the project."""
    return f"{base_url.rstrip('/')}/{quote(project, safe='')}/{quote(queue, safe='')}"


def message_body(size: int) -> str:
    """The same JSON text the Zaqar roles post, as SQS's string body, so
    both APIs move messages of the same size."""
    return encode_json({"event": "bench", "payload": "x" * size}).decode()


def send_body(url: str, size: int) -> bytes:
    return encode_json({"QueueUrl": url, "MessageBody": message_body(size)})


def send_batch_body(url: str, count: int, size: int) -> bytes:
    body = message_body(size)
    entries = [{"Id": str(i), "MessageBody": body} for i in range(count)]
    return encode_json({"QueueUrl": url, "Entries": entries})


def receive_body(url: str, count: int, visibility: int) -> bytes:
    # No WaitTimeSeconds: an empty queue answers at once, as a Zaqar claim
    # of an empty queue does, so both APIs are measured the same way.
    return encode_json({"QueueUrl": url, "MaxNumberOfMessages": count,
                    "VisibilityTimeout": visibility})


def delete_batch_body(url: str, handles: list[str]) -> bytes:
    entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    return encode_json({"QueueUrl": url, "Entries": entries})


def receipt_handles(body: bytes) -> list[str]:
    """The receipt handles of a ReceiveMessage answer."""
    messages = json_object(body).get("Messages") or []
    return [m["ReceiptHandle"] for m in messages
            if isinstance(m, dict) and isinstance(m.get("ReceiptHandle"), str)]


def batch_counts(body: bytes) -> tuple[int, int]:
    """(successful, failed) entries of a batch answer: a batch is HTTP 200
    even when some of its entries failed."""
    data = json_object(body)
    return len(data.get("Successful") or []), len(data.get("Failed") or [])
