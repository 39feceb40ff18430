"""Notifications to ``trust+http(s)://`` subscribers (tidings.auth.trusts).

Each is a webhook to the URL after ``trust+``, carrying ``X-Auth-Token``: a
token the service user gets for the subscription's Keystone trust
(``options.trust_id``), so the receiver acts as the subscribing user. A
trust Keystone refuses (revoked, expired) is a permanent failure; Keystone
out of reach is a failed attempt, retried by the policy.
"""

from __future__ import annotations

from typing import Any

from tidings import errors
from tidings.auth.trusts import TrustRefused, Trusts
from tidings.notify.payload import PermanentFailure, SendFailed
from tidings.notify.webhook import WebhookSender
from tidings.storage.base import Delivery


class TrustSender:
    def __init__(self, webhook: WebhookSender, trusts: Trusts | None) -> None:
        self.webhook = webhook
        self.trusts = trusts

    async def send(self, delivery: Delivery, doc: dict[str, Any]) -> None:
        if self.trusts is None:
            raise PermanentFailure("trust+ subscribers need auth.strategy = \"keystone\" "
                                   "where the notifications are sent")
        trust_id = delivery.options.get("trust_id")
        if not isinstance(trust_id, str) or not trust_id:
            raise PermanentFailure("the subscription has no Keystone trust (options.trust_id)")
        try:
            token = await self.trusts.token(trust_id)
        except TrustRefused as exc:
            raise PermanentFailure(str(exc)) from None
        except errors.ServiceUnavailable as exc:
            raise SendFailed(f"no trust token: {exc.description}") from None
        await self.webhook.send(delivery, doc, {"X-Auth-Token": token})
