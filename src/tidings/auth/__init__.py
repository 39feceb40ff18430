"""Authentication (noauth, Keystone tokens, pre-signed URLs) and
authorization (Zaqar's policy names and rules).

The transports authenticate (``Authenticator``) and put the resulting
``Identity`` in the operation's context; each operation calls
``authorize(ctx, "<policy name>")`` (``api/authorization.py``) first.
"""

from tidings.auth.identity import Identity
from tidings.auth.policy import Policy, PolicyError

__all__ = ["Identity", "Policy", "PolicyError"]
