"""Who a request comes from, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """A validated Keystone token, or a pre-signed URL (``signed``).

    Under noauth there is no Identity at all: the context's project comes
    from X-Project-ID and every operation is allowed.
    """

    project: str
    roles: frozenset[str] = frozenset()
    user_id: str | None = None
    # Seconds since the epoch; the identity is void from then on.
    expires_at: float | None = None
    signed: bool = False

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def credentials(self) -> dict[str, Any]:
        """What policy checks may test, named as oslo.policy names them."""
        roles = [role.lower() for role in self.roles]
        return {
            "project_id": self.project,
            "user_id": self.user_id,
            "roles": roles,
            "is_admin": "admin" in roles,
        }
