"""Building deliveries and storages for the notification tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tidings.storage.base import Delivery, DeliveryKind


def delivery(subscriber: str, *, body: Any = None, options: dict[str, Any] | None = None,
             kind: DeliveryKind = DeliveryKind.MESSAGE, attempts: int = 0,
             queue: str = "orders") -> Delivery:
    """A delivery as the outbox would lease it (for the senders alone)."""
    return Delivery(
        id=uuid.uuid4().hex, project="p", queue=queue, subscription_id="s1",
        subscriber=subscriber, options=options or {}, kind=kind,
        payload={"id": "0000000000000001", "body": body if body is not None else {"n": 1},
                 "ttl": 300} if kind is DeliveryKind.MESSAGE else {"Message": "confirm"},
        attempts=attempts, created=time.time(),
    )
