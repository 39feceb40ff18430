"""Pre-signed URLs, computed exactly as Zaqar computes them
(zaqar/common/urls.py), so a URL signed by either service verifies on the
other given the same key.

The signed message is ``<paths>\\n<methods>\\n<project>\\n<expires>`` with
a literal backslash-n between the parts (Zaqar's layout): ``paths`` is the
Python repr of the list of paths, ``methods`` the sorted methods joined
with commas, ``expires`` UTC as ``%Y-%m-%dT%H:%M:%S``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from tidings import errors
from tidings.auth.identity import Identity

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
VALID_PATHS = ("messages", "subscriptions", "claims")
VALID_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
DEFAULT_LIFETIME = timedelta(days=1)


class SigningKey:
    """The HMAC key of pre-signed URLs, one object shared by the service
    (which signs, api/queues.share) and the authenticator (which verifies).

    A holder and not a plain value because the key may only be known once
    the storage is open: without ``auth.secret_key``, the server's lifespan
    loads one that the storage generated and keeps (app.load_signing_key),
    after the frozen Service was built. It is set at most once, so what
    signs and what verifies can never disagree; ``None`` means pre-signed
    URLs are off.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes | None = None) -> None:
        self._value = value

    @property
    def value(self) -> bytes | None:
        return self._value

    def set(self, value: bytes) -> None:
        """Give the key that was not known at start; a configured key is
        never replaced."""
        if self._value is not None:
            raise RuntimeError("the signing key of pre-signed URLs is set already")
        self._value = value


def parse_expires(value: str) -> datetime:
    """An ISO 8601 time as naive UTC; one without a zone is taken as UTC."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def signature(key: bytes, paths: Sequence[str], project: str | None,
              methods: Sequence[str], expires: str) -> str:
    message = "%s\\n%s\\n%s\\n%s" % (list(paths), ",".join(sorted(methods)), project, expires)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _utcnow(now: float | None) -> datetime:
    stamp = time.time() if now is None else now
    return datetime.fromtimestamp(stamp, timezone.utc).replace(tzinfo=None)


def create(key: bytes, paths: Sequence[str], project: str | None,
           methods: Sequence[str] | None = None, expires: str | None = None,
           now: float | None = None, max_lifetime: timedelta | None = None
           ) -> dict[str, Any]:
    """Zaqar's share answer: signature, expires, paths, methods, project.

    Raises ValueError for an expiry that is unreadable, already past, or
    more than ``max_lifetime`` away: a URL cannot be revoked short of
    changing the key, so how long a leaked one works is bounded here.
    """
    methods = sorted(methods or ["GET"])
    current = _utcnow(now)
    if expires is not None:
        when = parse_expires(expires)
    else:
        when = current + min(DEFAULT_LIFETIME, max_lifetime or DEFAULT_LIFETIME)
    if when <= current:
        raise ValueError("`expires` is lower than the current time")
    if max_lifetime is not None and when - current > max_lifetime:
        raise ValueError(f"`expires` may be at most {int(max_lifetime.total_seconds())} "
                         "seconds from now")
    expires_str = when.strftime(DATE_FORMAT)
    return {
        "signature": signature(key, paths, project, methods, expires_str),
        "expires": expires_str,
        "paths": list(paths),
        "methods": methods,
        "project": project,
    }


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def verify(key: bytes, method: str, path: str, *, project: str | None,
           signature_value: str, expires: str | None, methods: str | None,
           paths: str | None, now: float | None = None) -> Identity:
    """The identity a pre-signed request acts as, from its URL-* headers;
    Forbidden unless the signature is genuine, unexpired, and covers this
    method and path (or a resource under one of the paths)."""
    method_list, path_list = _split(methods), _split(paths)
    if not project:
        raise errors.Forbidden("A pre-signed request needs the X-Project-ID it was signed for.")
    if not expires:
        raise errors.Forbidden("The pre-signed URL has no URL-Expires.")
    try:
        when = parse_expires(expires)
    except ValueError:
        raise errors.Forbidden("URL-Expires is not an ISO 8601 time.") from None
    if when <= _utcnow(now):
        raise errors.Forbidden("The pre-signed URL has expired.")
    expected = signature(key, path_list, project, method_list, when.strftime(DATE_FORMAT))
    if not hmac.compare_digest(expected, signature_value):
        raise errors.Forbidden("The signature of the pre-signed URL does not match.")
    if method not in method_list:
        raise errors.Forbidden(f"The pre-signed URL does not allow {method}.")
    if not any(path == p or path.startswith(p + "/") for p in path_list):
        raise errors.Forbidden(f"The pre-signed URL does not cover {path}.")
    expires_at = when.replace(tzinfo=timezone.utc).timestamp()
    return Identity(project=project, expires_at=expires_at, signed=True)
