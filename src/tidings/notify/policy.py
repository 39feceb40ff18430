"""Retry policy: when a failed notification is tried again, and when never.

Zaqar's ``_retry_policy`` (a subscription option, or queue metadata) runs in
phases after the first failed attempt:

1. ``retries_with_no_delay`` retries at once;
2. ``minimum_delay_retries`` retries ``minimum_delay`` seconds apart;
3. the back-off phase: the delays ``retry_backoff_function`` spreads from
   ``minimum_delay`` to ``maximum_delay`` (one step per ``backoff_interval``
   seconds of the range: Zaqar's LINEAR_INTERVAL);
4. ``maximum_delay_retries`` retries ``maximum_delay`` seconds apart;

then it gives up: the delivery is dead. ``maximum_retries`` (a Tidings
extension) caps the total number of retries. Which policy applies: the
subscription's, unless it has none or the queue's policy (or the server's)
says ``ignore_subscription_override``, then the queue's; keys a policy
leaves out come from the server's defaults (Zaqar's built-in constants).

Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeGuard

BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")
# Zaqar's consts.RETRY_OPS.
ZAQAR_DEFAULTS: dict[str, Any] = {
    "retries_with_no_delay": 3,
    "minimum_delay_retries": 3,
    "minimum_delay": 5,
    "maximum_delay": 30,
    "maximum_delay_retries": 3,
    "retry_backoff_function": "linear",
    "ignore_subscription_override": False,
}
# More back-off steps than this are never computed (a tiny interval over a
# wide range would otherwise make a huge list).
MAX_BACKOFF_STEPS = 1000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries_with_no_delay: int = 3
    minimum_delay_retries: int = 3
    minimum_delay: float = 5.0
    maximum_delay: float = 30.0
    maximum_delay_retries: int = 3
    retry_backoff_function: str = "linear"
    ignore_subscription_override: bool = False
    # Seconds of the [minimum_delay, maximum_delay] range per back-off step.
    backoff_interval: float = 5.0
    # At most this many retries in all; None: as many as the phases make.
    maximum_retries: int | None = None

    def schedule(self) -> list[float]:
        """The delay before each retry, in order; its length is the number of
        retries before the delivery is dead."""
        delays: list[float] = [0.0] * max(self.retries_with_no_delay, 0)
        delays += [float(self.minimum_delay)] * max(self.minimum_delay_retries, 0)
        delays += backoff_delays(self.retry_backoff_function, self.minimum_delay,
                                 self.maximum_delay, self.backoff_interval)
        delays += [float(self.maximum_delay)] * max(self.maximum_delay_retries, 0)
        if self.maximum_retries is not None:
            delays = delays[:max(self.maximum_retries, 0)]
        return delays

    def delay_after(self, failures: int) -> float | None:
        """Seconds to wait after the ``failures``-th failed attempt (1 = the
        first send failed), or None: give up, the delivery is dead."""
        if failures < 1:
            return 0.0
        schedule = self.schedule()
        if failures > len(schedule):
            return None
        return schedule[failures - 1]

    @property
    def total_retries(self) -> int:
        return len(self.schedule())


def backoff_delays(function: str, minimum: float, maximum: float,
                   interval: float) -> list[float]:
    """The back-off phase's delays: Zaqar's four functions, made safe for
    float delays and for the ranges where Zaqar's divide by zero."""
    if interval <= 0 or maximum <= minimum:
        return []
    steps = min(int((maximum - minimum) / interval + 1e-9), MAX_BACKOFF_STEPS)
    if steps <= 0:
        return []
    if function == "linear":
        # range(minimum, maximum, interval)
        return [float(minimum + i * interval) for i in range(steps)
                if minimum + i * interval < maximum]
    if steps == 1:
        return [float(minimum)]
    if function == "arithmetic":
        # From minimum to maximum with growing gaps: min + d * a(a-1)/2.
        d = 2.0 * (maximum - minimum) / (steps * (steps - 1))
        return [minimum + (a - 1) * a * d / 2 for a in range(1, steps + 1)]
    if function in ("geometric", "exponential"):
        # Zaqar's two formulas give the same series: min * k^(a-1), ending
        # at max. A minimum of 0 has no ratio: start from the interval.
        start = minimum if minimum > 0 else min(interval, maximum)
        k = (maximum / start) ** (1.0 / (steps - 1))
        return [start * k ** (a - 1) for a in range(1, steps + 1)]
    raise ValueError(f"unknown retry_backoff_function {function!r}")


# --- reading a policy from options and metadata ---------------------------------

_INT_KEYS = ("retries_with_no_delay", "minimum_delay_retries", "maximum_delay_retries",
             "maximum_retries")
_DELAY_KEYS = ("minimum_delay", "maximum_delay", "backoff_interval")
KNOWN_KEYS = frozenset(f.name for f in fields(RetryPolicy))


def validate_retry_policy(value: Any) -> None:
    """Raise ValueError with a readable reason unless ``value`` is a valid
    ``_retry_policy``: for the operation layer to answer 400 at creation
    (subscription options or queue metadata)."""
    if not isinstance(value, Mapping):
        raise ValueError("_retry_policy must be an object")
    for key, item in value.items():
        if key in _INT_KEYS:
            if not _is_int(item) or item < 0:
                raise ValueError(f"_retry_policy.{key} must be a non-negative integer")
        elif key in _DELAY_KEYS:
            if not _is_number(item) or item < 0:
                raise ValueError(f"_retry_policy.{key} must be a non-negative number")
        elif key == "retry_backoff_function":
            if item not in BACKOFF_FUNCTIONS:
                raise ValueError("_retry_policy.retry_backoff_function must be one of "
                                 + ", ".join(BACKOFF_FUNCTIONS))
        elif key == "ignore_subscription_override":
            if not isinstance(item, bool):
                raise ValueError("_retry_policy.ignore_subscription_override must be a boolean")
        # Unknown keys are kept and ignored, as Zaqar does.
    minimum = value.get("minimum_delay")
    maximum = value.get("maximum_delay")
    if _is_number(minimum) and _is_number(maximum) and minimum > maximum:
        raise ValueError("_retry_policy.minimum_delay must not exceed maximum_delay")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _overlay(policy: RetryPolicy, given: Mapping[str, Any]) -> RetryPolicy:
    """``policy`` with the valid keys of ``given``; invalid values are
    ignored (the delivery must still be tried, whatever was stored)."""
    changes: dict[str, Any] = {}
    for key, value in given.items():
        if key in _INT_KEYS and _is_int(value) and value >= 0:
            changes[key] = value
        elif key in _DELAY_KEYS and _is_number(value) and value >= 0:
            changes[key] = float(value)
        elif ((key == "retry_backoff_function" and value in BACKOFF_FUNCTIONS)
              or (key == "ignore_subscription_override" and isinstance(value, bool))):
            changes[key] = value
    policy = replace(policy, **changes)
    if policy.minimum_delay > policy.maximum_delay:
        policy = replace(policy, maximum_delay=policy.minimum_delay)
    return policy


def effective_policy(server: RetryPolicy, queue_policy: Any = None,
                     subscription_policy: Any = None) -> RetryPolicy:
    """The policy for one delivery, as Zaqar picks it: the subscription's
    ``_retry_policy`` unless it is empty or the queue's (or the server's)
    says ``ignore_subscription_override``; then the queue's. The chosen one
    is laid over the server's defaults."""
    queue_policy = queue_policy if isinstance(queue_policy, Mapping) else {}
    subscription_policy = subscription_policy if isinstance(subscription_policy, Mapping) else {}
    ignore = (server.ignore_subscription_override
              or queue_policy.get("ignore_subscription_override") is True
              or subscription_policy.get("ignore_subscription_override") is True)
    chosen = queue_policy if ignore or not subscription_policy else subscription_policy
    policy = _overlay(server, chosen)
    return replace(policy, ignore_subscription_override=ignore)

