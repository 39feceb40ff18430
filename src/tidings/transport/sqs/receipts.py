"""Receipt handles: opaque, signed tokens naming one claimed message.

An SQS receipt handle stands for "this message, as received this time".
Here it carries the message id and the id of the claim the receive made
(each received message has a claim of its own, so that its visibility can
change alone), signed with an HMAC over the project and the queue too: a
handle used with another queue or project, altered or made up is
ReceiptHandleIsInvalid before any storage is asked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from tidings.transport.sqs.errors import SqsError

VERSION = "1"
# 128 bits of HMAC-SHA256: forging one is out of reach, and handles stay short.
MAC_BYTES = 16


def key_for(settings: Any) -> bytes:
    """The key receipt handles are signed with, the same in every process
    of a deployment (``serve --workers N``, servers behind a balancer) and
    across restarts, so that a handle received from one is accepted by the
    others: derived from ``auth.secret_key`` (else the notifications'
    ``signing_secret``), or without either from the storage URLs they all
    share. A key anyone can derive still makes a garbled, altered or
    misplaced handle fail before storage is asked; what lets a handle act
    on a message is the claim id inside it, random and unguessable."""
    secret = settings.auth.secret_key or settings.notifications.signing_secret
    material = secret or "\n".join((settings.storage, settings.pooling.control_storage))
    return hmac.new(material.encode(), b"tidings sqs receipt handles", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str
    claim_id: str


def _mac(key: bytes, project: str, queue: str, payload: str) -> bytes:
    data = "\n".join((project, queue, payload)).encode()
    return hmac.new(key, data, hashlib.sha256).digest()[:MAC_BYTES]


def issue(key: bytes, project: str, queue: str, message_id: str, claim_id: str) -> str:
    # Ids never hold a newline: it separates them.
    payload = f"{VERSION}\n{message_id}\n{claim_id}"
    token = payload.encode() + _mac(key, project, queue, payload)
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def read(key: bytes, project: str, queue: str, handle: object) -> Receipt:
    """The receipt a handle stands for; ReceiptHandleIsInvalid when it was
    not issued by this service for this queue."""
    invalid = SqsError("ReceiptHandleIsInvalid",
                       f"The input receipt handle \"{handle}\" is not a valid receipt handle.")
    if not isinstance(handle, str) or len(handle) < 8 or len(handle) > 1024:
        raise invalid
    try:
        token = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    # The MAC is binary and may hold any byte: it has a fixed length.
    payload, mac = token[:-MAC_BYTES], token[-MAC_BYTES:]
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise invalid from None
    if not hmac.compare_digest(mac, _mac(key, project, queue, text)):
        raise invalid
    version, _, rest = text.partition("\n")
    message_id, _, claim_id = rest.partition("\n")
    if version != VERSION or not message_id or not claim_id:
        raise invalid
    return Receipt(message_id=message_id, claim_id=claim_id)
