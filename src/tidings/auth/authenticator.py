"""Authentication: from a request's headers to an Identity (or None: noauth)."""

from __future__ import annotations

import time
from typing import Any, Callable

from tidings.auth import signed
from tidings.auth.identity import Identity
from tidings.auth.keystone import TokenValidator
from tidings.config import AuthSettings

HeaderGetter = Callable[[str], "str | None"]

# Answered without credentials under keystone: liveness checks (load
# balancers hold no tokens) and the versions document, which Zaqar also
# leaves open. They reveal nothing about any project and authorize nothing.
PUBLIC = frozenset({
    ("GET", "/"),
    ("GET", "/v2/ping"),
    ("HEAD", "/v2/ping"),
    ("HEAD", "/v2/health"),
    # The OpenAPI document (transport/http/openapi.py) describes the service only.
    ("GET", "/v2/openapi.json"),
    # The web console's page (transport/http/console.py): static files that
    # hold nothing of any project; what it does, it does with credentials.
    ("GET", "/console"),
    # The probes (transport/http/probes.py): one word each, no project's data.
    ("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/readyz"), ("HEAD", "/readyz"),
})
CONSOLE_FILES = "/console/"


def is_public(method: str, path: str) -> bool:
    if (method, path) in PUBLIC:
        return True
    # A dot segment could name another route to a router that resolved it.
    return method == "GET" and path.startswith(CONSOLE_FILES) and "/." not in path


class Authenticator:
    """The configured strategy: noauth (``enabled`` is False) or keystone."""

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # Shared with the Service (app.create_app): the lifespan may set it.
        self.signing_key = signed.SigningKey(settings.secret_key.encode() or None)
        self.keystone = (TokenValidator(settings.keystone, clock)
                         if settings.strategy == "keystone" else None)

    @property
    def enabled(self) -> bool:
        return self.keystone is not None

    async def close(self) -> None:
        if self.keystone is not None:
            await self.keystone.close()

    async def for_token(self, token: str | None) -> Identity:
        assert self.keystone is not None
        if not token:
            raise self.keystone.unauthorized()
        return await self.keystone.validate(token)

    async def for_ec2_signature(self, credentials: dict[str, Any]) -> tuple[Identity | None, str]:
        """The identity of an AWS SigV4-signed request (the SQS API), checked
        by Keystone: (identity, "") or (None, the reason it was refused)."""
        assert self.keystone is not None
        return await self.keystone.validate_ec2(credentials)

    async def for_request(self, method: str, path: str, header: HeaderGetter) -> Identity | None:
        """The identity of an HTTP request; None under noauth and for the
        public paths. Unauthorized without valid credentials, Forbidden for
        a pre-signed URL that does not cover the request."""
        if self.keystone is None:
            return None
        token = header("X-Auth-Token")
        if token:
            return await self.keystone.validate(token)
        url_signature = header("URL-Signature")
        key = self.signing_key.value
        if url_signature is not None and key is not None:
            return signed.verify(
                key, method, path, project=header("X-Project-ID"),
                signature_value=url_signature, expires=header("URL-Expires"),
                methods=header("URL-Methods"), paths=header("URL-Paths"), now=self.clock(),
            )
        if is_public(method, path):
            return None
        raise self.keystone.unauthorized()
