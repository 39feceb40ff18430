"""The rule for what a driver makes in ``open()`` (a connection, a pool, a
codec read from the database): used before it, it is a 503."""

from __future__ import annotations

from typing import TypeVar

from tidings import errors

T = TypeVar("T")


def opened(value: T | None, what: str = "storage") -> T:
    """``value`` once ``open()`` has set it; ServiceUnavailable while it is
    None (before ``open()``, after ``close()``)."""
    if value is None:
        raise errors.ServiceUnavailable(f"The {what} is not open.")
    return value
