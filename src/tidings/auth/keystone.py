"""Validating Keystone v3 tokens without blocking the event loop.

Tidings logs in once as its service user (renewed before that token
expires) and asks ``GET /v3/auth/tokens?nocatalog`` about each user token
it has not seen lately. Answers, good and bad, are cached for
``cache_time`` seconds and never past the token's expiry: as with
keystonemiddleware, a revoked token keeps working until its cache entry
lapses. Concurrent requests with the same new token share one call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime
from typing import Any, Callable

import httpx

from tidings import errors
from tidings.auth import ec2
from tidings.auth.identity import Identity
from tidings.config import KeystoneSettings
from tidings.shared_calls import SharedCalls

log = logging.getLogger(__name__)

# Renew the service token this long before it expires (keystoneauth's margin).
RENEW_MARGIN = 120.0
# Cache entries kept at most; expired ones go first when it is full.
MAX_CACHED = 10_000
REQUIRES_AUTH = "The request you have made requires authentication."


def timestamp(value: str) -> float:
    """Seconds since the epoch of one of Keystone's ISO 8601 times."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _cache_key(token: str) -> bytes:
    # Keep digests, not the bearer tokens themselves, in memory.
    return hashlib.sha256(token.encode()).digest()


class TokenValidator:
    def __init__(self, settings: KeystoneSettings, clock: Callable[[], float] = time.time
                 ) -> None:
        if not settings.url:
            raise ValueError("auth.keystone.url must be set when auth.strategy is keystone")
        self.settings = settings
        self.clock = clock
        self.api = settings.url.rstrip("/") + "/v3"
        self.challenge = f'Keystone uri="{settings.www_authenticate_uri or settings.url}"'
        self._client: httpx.AsyncClient | None = None
        self._service_token: str | None = None
        self._service_user_id: str | None = None
        self._service_expires = 0.0
        self._login_lock = asyncio.Lock()
        # digest -> (identity, or None for a rejected token; valid until)
        self._cache: dict[bytes, tuple[Identity | None, float]] = {}
        # A token's validation, shared by the requests that bring it at once.
        self._fetches: SharedCalls[bytes, Identity | None] = SharedCalls()
        # EC2 access key -> (secret, identity, valid until): validate_ec2.
        self._ec2_cache: dict[str, tuple[str, Identity, float]] = {}
        self._ec2_readable = True

    def unauthorized(self, description: str = REQUIRES_AUTH) -> errors.Unauthorized:
        return errors.Unauthorized(description, challenge=self.challenge)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def validate(self, token: str) -> Identity:
        """The identity of a user token; Unauthorized if Keystone rejects it,
        ServiceUnavailable if Keystone cannot be asked."""
        key = _cache_key(token)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[1]:
            identity = cached[0]
        else:
            identity = await self._fetches.run(key, lambda: self._fetch_and_cache(key, token))
        if identity is None or identity.expired(now):
            raise self.unauthorized()
        return identity

    async def _fetch_and_cache(self, key: bytes, token: str) -> Identity | None:
        identity = await self._fetch(token)
        now = self.clock()
        until = now + self.settings.cache_time
        if identity is not None and identity.expires_at is not None:
            until = min(until, identity.expires_at)
        if len(self._cache) >= MAX_CACHED:
            self._evict(now)
        self._cache[key] = (identity, until)
        return identity

    def _evict(self, now: float) -> None:
        self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        if len(self._cache) >= MAX_CACHED:  # all fresh: drop the older half
            keep = list(self._cache.items())[MAX_CACHED // 2:]
            self._cache = dict(keep)

    async def _fetch(self, token: str) -> Identity | None:
        for attempt in (1, 2):
            service_token = await self._login()
            response = await self._request(
                "GET", "/auth/tokens?nocatalog",
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
            )
            if response.status_code == 200:
                return self._identity(response.json())
            if response.status_code == 404:
                return None
            if response.status_code == 401 and attempt == 1:
                # Our own token was revoked or has expired early: log in again.
                self._service_token = None
                continue
            break
        log.error("Keystone answered %s to a token validation: %s",
                  response.status_code, response.text[:500])
        raise errors.ServiceUnavailable("The identity service could not validate the token.")

    async def validate_ec2(self, credentials: dict[str, Any]) -> tuple[Identity | None, str]:
        """Check an AWS signature: (the identity of the credential's project,
        "") when it is right, else (None, the reason). The first request of
        an access key is checked by Keystone's EC2-credentials API (``POST
        /v3/ec2tokens``); then the credential's secret and identity are
        kept for ``cache_time`` (never past the identity's expiry) and its
        later requests are checked here (tidings.auth.ec2): as with tokens,
        a deleted credential keeps working until its entry lapses."""
        access = credentials["access"]
        now = self.clock()
        cached = self._ec2_cache.get(access)
        if cached is not None and now < cached[2]:
            secret, identity, _ = cached
            if ec2.matches(secret, credentials):
                return identity, ""
            return None, "Credential signature mismatch"
        checked, reason = await self._check_ec2(credentials)
        if checked is not None:
            fetched = await self._ec2_secret(checked, access)
            if fetched is not None:
                until = now + self.settings.cache_time
                if checked.expires_at is not None:
                    until = min(until, checked.expires_at)
                if len(self._ec2_cache) >= MAX_CACHED:
                    self._ec2_cache = {k: v for k, v in self._ec2_cache.items() if v[2] > now}
                self._ec2_cache[access] = (fetched, checked, until)
        return checked, reason

    async def _ec2_secret(self, identity: Identity, access: str) -> str | None:
        """The secret of an EC2 credential Keystone just accepted (None if it
        cannot be read: the next request asks Keystone again)."""
        if identity.user_id is None or self.settings.cache_time <= 0 or not self._ec2_readable:
            return None
        response = await self._request(
            "GET", f"/users/{identity.user_id}/credentials/OS-EC2/{access}",
            headers={"X-Auth-Token": await self._login()})
        if response.status_code in (401, 403):
            # The service user may not read credentials: say so once, and
            # from now on let Keystone check every signature.
            self._ec2_readable = False
            log.warning("Keystone does not let the service user read EC2 credentials (%s): "
                        "every SQS request will be checked by Keystone", response.status_code)
            return None
        if response.status_code != 200:
            return None
        secret = (response.json().get("credential") or {}).get("secret")
        return secret if isinstance(secret, str) else None

    async def _check_ec2(self, credentials: dict[str, Any]) -> tuple[Identity | None, str]:
        for attempt in (1, 2):
            service_token = await self._login()
            response = await self._request(
                "POST", "/ec2tokens", json={"credentials": credentials},
                headers={"X-Auth-Token": service_token})
            if response.status_code == 200:
                return self._identity(response.json()), ""
            if response.status_code == 401 and attempt == 1 and not self._names_credential(
                    response):
                # Our own token was refused, not the signature: log in again.
                self._service_token = None
                continue
            if response.status_code in (400, 401, 403, 404):
                return None, self._reason(response)
            break
        log.error("Keystone answered %s to an EC2 signature check: %s",
                  response.status_code, response.text[:500])
        raise errors.ServiceUnavailable("The identity service could not check the signature.")

    @staticmethod
    def _reason(response: httpx.Response) -> str:
        try:
            return str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            return response.text[:200]

    def _names_credential(self, response: httpx.Response) -> bool:
        """Whether a 401 is about the EC2 credential (its signature, its
        key, its time) rather than about our service token."""
        reason = self._reason(response).lower()
        return any(word in reason for word in ("ec2", "signature", "credential"))

    def _identity(self, document: dict[str, Any]) -> Identity:
        token = document["token"]
        project = (token.get("project") or {}).get("id")
        if not project:
            raise errors.ProjectMissing("The token is not scoped to a project.")
        expires = token.get("expires_at")
        return Identity(
            project=project,
            roles=frozenset(role["name"] for role in token.get("roles") or ()),
            user_id=(token.get("user") or {}).get("id"),
            expires_at=timestamp(expires) if expires else None,
        )

    async def _login(self) -> str:
        """The service token, logging in when there is none or it is about
        to expire. One login at a time; the others wait for its token."""
        if self._service_token is not None and self.clock() < self._service_expires:
            return self._service_token
        async with self._login_lock:
            if self._service_token is not None and self.clock() < self._service_expires:
                return self._service_token
            s = self.settings
            body = {"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": s.username, "domain": {"id": s.user_domain_id},
                    "password": s.password}}},
                "scope": {"project": {"name": s.project_name,
                                      "domain": {"id": s.project_domain_id}}},
            }}
            response = await self._request("POST", "/auth/tokens?nocatalog", json=body)
            if response.status_code != 201 or "X-Subject-Token" not in response.headers:
                log.error("Keystone refused the service login of %r (%s): %s",
                          s.username, response.status_code, response.text[:500])
                raise errors.ServiceUnavailable("The identity service refused the service login.")
            document = response.json()["token"]
            expires = timestamp(document["expires_at"])
            self._service_user_id = (document.get("user") or {}).get("id")
            lifetime = expires - self.clock()
            self._service_expires = expires - min(RENEW_MARGIN, lifetime / 2)
            self._service_token = response.headers["X-Subject-Token"]
            return self._service_token

    async def service_user_id(self) -> str:
        """The id of the service user (the trustee of trusts, auth/trusts.py)."""
        await self._login()
        if not self._service_user_id:
            raise errors.ServiceUnavailable("The identity service did not name the service user.")
        return self._service_user_id

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to the identity API (``path`` under /v3); ServiceUnavailable
        when Keystone cannot be reached."""
        return await self._request(method, path, **kwargs)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, self.api + path, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("Keystone at %s is unreachable: %s", self.api, exc)
            raise errors.ServiceUnavailable("The identity service is unreachable.") from None
