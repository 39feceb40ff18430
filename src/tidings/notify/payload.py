"""What a notification says, and how a send can fail.

A MESSAGE notification is Zaqar's: the message as posted (``body``,
``ttl``) plus ``queue_name`` and ``"Message_Type": "Notification"``; the
ids travel beside it (HTTP and mail headers) so receivers can deduplicate
without the document changing shape. A CONFIRMATION notification is the
payload the operation layer enqueued plus ``queue_name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tidings.storage.base import Delivery, DeliveryKind

DELIVERY_ID_HEADER = "X-Tidings-Delivery-ID"
MESSAGE_ID_HEADER = "X-Tidings-Message-ID"
NOTIFICATION = "Notification"


class SendFailed(Exception):
    """This attempt failed; the retry policy decides what comes next."""


class PermanentFailure(SendFailed):
    """Sending again will not help (a refused address, a malformed
    subscriber): the delivery is dead at once."""


class NotHere(SendFailed):
    """This process cannot send it but another may (a WebSocket held by
    another process): try again after ``retry_in`` seconds."""

    def __init__(self, message: str, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


def document(delivery: Delivery, decrypt: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The notification sent for ``delivery`` (a fresh dict)."""
    payload = delivery.payload
    if delivery.kind is DeliveryKind.MESSAGE:
        body = payload.get("body")
        if decrypt is not None:
            body = decrypt(body)
        return {
            "body": body,
            "ttl": payload.get("ttl"),
            "queue_name": delivery.queue,
            "Message_Type": NOTIFICATION,
        }
    return {**payload, "queue_name": delivery.queue}


def message_id(delivery: Delivery) -> str | None:
    if delivery.kind is DeliveryKind.MESSAGE:
        value = delivery.payload.get("id")
        return str(value) if value is not None else None
    return None


def id_headers(delivery: Delivery) -> dict[str, str]:
    headers = {DELIVERY_ID_HEADER: delivery.id}
    mid = message_id(delivery)
    if mid is not None:
        headers[MESSAGE_ID_HEADER] = mid
    return headers
