"""Keystone trusts for ``trust+http(s)://`` subscribers, as Zaqar has them.

When a user subscribes ``trust+https://...`` under Keystone auth, the user
delegates their roles on the project to Tidings' service user (a trust,
``impersonation`` on, expiring with the subscription); the subscription
keeps its id in ``options.trust_id``, as Zaqar's does. Each notification
then goes to the URL without ``trust+``, with ``X-Auth-Token`` set to a
token the service user gets for that trust: the receiver (often another
OpenStack service, or Tidings itself) sees a token of the subscribing
user, scoped to their project, without anyone keeping their password.

The trust is made with the subscribing request's own token: Keystone lets
only the trustor create a trust. Trust tokens are cached until shortly
before they expire, one per trust.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx

from tidings import errors
from tidings.auth.keystone import RENEW_MARGIN, TokenValidator, timestamp
from tidings.config import KeystoneSettings

PREFIX = "trust+"
# Trust tokens kept at most (one per subscription with a trust).
MAX_CACHED = 10_000


class TrustRefused(Exception):
    """Keystone will not issue a token for this trust (revoked, expired, or
    its trustor lost the roles): sending again will not help."""


def strip_prefix(subscriber: str) -> str:
    """The URL a ``trust+`` subscriber is sent to."""
    return subscriber[len(PREFIX):] if subscriber.startswith(PREFIX) else subscriber


def is_trust_subscriber(subscriber: str) -> bool:
    return subscriber.startswith(PREFIX)


class Trusts:
    """Makes trusts to the service user and gets tokens for them. Uses the
    token validator's connection and service login."""

    def __init__(self, keystone: TokenValidator, clock: Callable[[], float] = time.time
                 ) -> None:
        self.keystone = keystone
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: KeystoneSettings) -> Trusts:
        return cls(TokenValidator(settings))

    async def close(self) -> None:
        await self.keystone.close()

    async def create(self, user_token: str, *, trustor: str, project: str,
                     roles: Iterable[str], expires_at: float) -> str:
        """A trust from ``trustor`` (whose token this is) to the service
        user on ``project`` with ``roles``; its id. Forbidden when Keystone
        refuses it, ServiceUnavailable when Keystone cannot be asked."""
        trustee = await self.keystone.service_user_id()
        expires = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"trust": {
            "trustor_user_id": trustor, "trustee_user_id": trustee, "project_id": project,
            "impersonation": True, "roles": [{"name": role} for role in sorted(roles)],
            "expires_at": expires,
        }}
        response = await self.keystone.request("POST", "/OS-TRUST/trusts", json=body,
                                               headers={"X-Auth-Token": user_token})
        if response.status_code == 201:
            return str(response.json()["trust"]["id"])
        detail = _error_message(response)
        if response.status_code in (400, 401, 403, 404):
            raise errors.Forbidden(f"Keystone refused the trust for this subscription: {detail}")
        raise errors.ServiceUnavailable(f"The identity service could not make the trust: "
                                        f"{detail}")

    async def token(self, trust_id: str) -> str:
        """A token of the service user scoped to the trust (cached). Raises
        TrustRefused, or ServiceUnavailable when Keystone cannot be asked."""
        cached = self._tokens.get(trust_id)
        if cached is not None and self.clock() < cached[1]:
            return cached[0]
        s = self.keystone.settings
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.username, "domain": {"id": s.user_domain_id},
                "password": s.password}}},
            "scope": {"OS-TRUST:trust": {"id": trust_id}},
        }}
        response = await self.keystone.request("POST", "/auth/tokens?nocatalog", json=body)
        if response.status_code == 201 and "X-Subject-Token" in response.headers:
            token = response.headers["X-Subject-Token"]
            expires = timestamp(response.json()["token"]["expires_at"])
            lifetime = expires - self.clock()
            if len(self._tokens) >= MAX_CACHED:
                self._tokens.clear()
            self._tokens[trust_id] = (token, expires - min(RENEW_MARGIN, lifetime / 2))
            return token
        if response.status_code in (401, 403, 404):
            raise TrustRefused(f"Keystone refused a token for trust {trust_id}: "
                               f"{_error_message(response)}")
        raise errors.ServiceUnavailable(
            f"The identity service could not issue a trust token ({response.status_code}).")


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:  # noqa: BLE001 - whatever Keystone answered
        return f"HTTP {response.status_code}"
