"""Authentication (noauth, Keystone tokens, pre-signed URLs) and
authorization (Zaqar's policy names and rules).

The transports authenticate (``Authenticator``) and put the resulting
``Identity`` in the operation's context; each operation calls
``authorize(ctx, "<policy name>")`` first.
"""

from tidings.auth.identity import Identity
from tidings.auth.policy import Policy, PolicyError, authorize, is_admin

__all__ = ["Identity", "Policy", "PolicyError", "authorize", "is_admin"]
