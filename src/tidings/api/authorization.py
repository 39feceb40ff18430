"""Authorization of an operation: Zaqar's policy names checked against the
identity of the operation's context.

It lives in ``api/`` because it reads the context; ``auth/`` knows rules
and identities, not operations.
"""

from __future__ import annotations

from tidings.api.context import Context


def is_admin(ctx: Context) -> bool:
    """Whether the policy's ``context_is_admin`` rule holds for the identity
    of ``ctx``. Under noauth nobody is an admin: everything is allowed, but
    nothing proves who is asking."""
    identity = ctx.identity
    if identity is None:
        return False
    return ctx.service.policy.allows("context_is_admin", identity, {"project_id": ctx.project})


def authorize(ctx: Context, action: str) -> None:
    """Raise Forbidden unless the policy allows ``action`` (a Zaqar policy
    name) to the identity of ``ctx``. Under noauth everything is allowed."""
    identity = ctx.identity
    if identity is None:
        return
    ctx.service.policy.enforce(action, identity, {"project_id": ctx.project})
