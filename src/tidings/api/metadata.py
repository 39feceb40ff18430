"""Queue metadata: the reserved keys, their defaults and their checks."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings import errors
from tidings.api import validate
from tidings.config import Limits


def reserved_defaults(limits: Limits) -> dict[str, Any]:
    """The reserved keys as a queue without them behaves, shown on GET."""
    return {
        "_max_messages_post_size": limits.max_messages_post_size,
        "_default_message_ttl": limits.default_message_ttl,
        "_default_message_delay": 0,
        "_dead_letter_queue": None,
        "_dead_letter_queue_messages_ttl": None,
        "_max_claim_count": None,
        "_enable_encrypt_messages": False,
    }


def with_defaults(metadata: dict[str, Any], limits: Limits) -> dict[str, Any]:
    shown = reserved_defaults(limits)
    shown.update(metadata)
    return shown


def _optional(check: Any) -> Any:
    def run(value: Any, key: str, limits: Limits) -> None:
        if value is not None:
            check(value, key, limits)

    return run


def _post_size(value: Any, key: str, limits: Limits) -> None:
    validate.in_range(validate.integer(value, key), 1, limits.max_messages_post_size, key)


def _ttl(value: Any, key: str, limits: Limits) -> None:
    validate.in_range(
        validate.integer(value, key), limits.min_message_ttl, limits.max_message_ttl, key
    )


def _delay(value: Any, key: str, limits: Limits) -> None:
    validate.in_range(validate.integer(value, key), 0, limits.max_message_delay, key)


def _claim_count(value: Any, key: str, limits: Limits) -> None:
    validate.in_range(validate.integer(value, key), 1, 2**31 - 1, key)


def _queue_name(value: Any, key: str, limits: Limits) -> None:
    if not isinstance(value, str):
        raise errors.InvalidBody(f"{key} must be a string.")
    validate.queue_name(value, limits)


def _boolean(value: Any, key: str, limits: Limits) -> None:
    if not isinstance(value, bool):
        raise errors.InvalidBody(f"{key} must be a boolean.")


def _string(value: Any, key: str, limits: Limits) -> None:
    if not isinstance(value, str):
        raise errors.InvalidBody(f"{key} must be a string.")


RESERVED_CHECKS = {
    "_max_messages_post_size": _post_size,
    "_default_message_ttl": _ttl,
    "_default_message_delay": _delay,
    "_max_claim_count": _optional(_claim_count),
    "_dead_letter_queue": _optional(_queue_name),
    "_dead_letter_queue_messages_ttl": _optional(_ttl),
    "_enable_encrypt_messages": _boolean,
    "_flavor": _optional(_string),
}


def check(metadata: Any, limits: Limits) -> dict[str, Any]:
    """Validate a whole metadata document before it is stored."""
    metadata = validate.json_object(metadata, "queue metadata")
    size = len(msgspec.json.encode(metadata))
    if size > limits.max_queue_metadata:
        raise errors.ValidationFailed(
            f"Queue metadata is too large. Max size: {limits.max_queue_metadata} bytes."
        )
    for key, value in metadata.items():
        rule = RESERVED_CHECKS.get(key)
        if rule is not None:
            rule(value, key, limits)
    _check_integers(metadata)
    return metadata


INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def _check_integers(document: Any) -> None:
    """Integers must fit in 64 bits, as in Zaqar (whose stores refuse
    others): a client reading the metadata back may not handle bigger ones.
    Walked with a stack, not recursion: a deep document must not overflow."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif (isinstance(value, int) and not isinstance(value, bool)
              and not INT64_MIN <= value <= UINT64_MAX):
            raise errors.InvalidBody("Integers in queue metadata must fit in 64 bits.")
