"""Checks shared by the operations: names, ranges, types and sizes.

Titles follow Zaqar: a wrong type is "Invalid request body", a value out of
range is "Invalid API request".
"""

from __future__ import annotations

import re
from typing import Any

from tidings import errors
from tidings.config import Limits

# Zaqar 23's rule: dots are allowed.
_QUEUE_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")


def queue_name(name: str, limits: Limits) -> str:
    if not name:
        raise errors.InvalidQueueName("Queue names may not be empty.")
    if len(name) > limits.max_queue_name_length:
        raise errors.InvalidQueueName(
            f"Queue names may not be more than {limits.max_queue_name_length} characters long."
        )
    if not _QUEUE_NAME.match(name):
        raise errors.InvalidQueueName(
            "Queue names may only contain ASCII letters, digits, underscores, dots and dashes."
        )
    return name


def integer(value: Any, field: str) -> int:
    """An int from a JSON document (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidBody(f"{field} must be an integer, not {type_name(value)}.")
    return value


def in_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise errors.ValidationFailed(f"The {what} must be at least {low} and at most {high}.")
    return value


def limit(value: int | None, default: int, maximum: int, what: str) -> int:
    if value is None:
        return default
    if not 0 < value <= maximum:
        raise errors.ValidationFailed(
            f"Limit of {what} must be at least 1 and may not be greater than {maximum}."
        )
    return value


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.InvalidBody(f"The {what} must be a JSON object, not {type_name(value)}.")
    return value


def type_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def body_size(size: int | None, cap: int, what: str) -> None:
    """Refuse a body over ``cap`` bytes before it is read whole."""
    if size is not None and size > cap:
        raise errors.ValidationFailed(f"The {what} is too large. Max size: {cap} bytes.")
