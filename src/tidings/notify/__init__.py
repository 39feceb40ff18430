"""Notification delivery: the worker that empties the outbox.

- ``worker.Notifier``: leases due deliveries and sends them (webhook,
  mailto, WebSocket), then records delivered / retry / dead.
- ``policy``: Zaqar's ``_retry_policy``, as pure functions.
- ``webhook``, ``mailto``, ``sockets``: the three kinds of subscriber.
- ``addresses``: which addresses a webhook may reach.

See docs/design/notifications.md.
"""

from tidings.notify.worker import Notifier

__all__ = ["Notifier"]
