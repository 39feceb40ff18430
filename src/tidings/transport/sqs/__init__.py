"""The SQS API: Amazon SQS's AWS JSON 1.0 protocol on Tidings' queues.

A third transport beside the Zaqar HTTP and WebSocket APIs, with no rules
of its own: each action translates to the operations of ``tidings.api``
(docs/sqs.md has the mapping).
"""

from tidings.transport.sqs.endpoint import QUEUE_URL, Endpoint, QueueUrl, serves
from tidings.transport.sqs.receipts import key_for as receipt_key

__all__ = ["QUEUE_URL", "Endpoint", "QueueUrl", "receipt_key", "serves"]
