"""The claim rules a driver checks in Python (the Redis driver checks the
same ones inside its scripts, next to the data)."""

from __future__ import annotations

from tidings import errors


def check_delete_allowed(
    current: str | None, claim_expires: float, allowed: set[str], strict: bool, now: float
) -> None:
    """Raise unless a message claimed by ``current`` until ``claim_expires``
    may be deleted with the claim ids ``allowed``.

    ``strict`` (a single delete with a claim id) also refuses a claim id for
    a message that is not claimed, as Zaqar does.
    """
    active = current is not None and claim_expires > now
    if not active:
        if strict:
            raise errors.MessageNotClaimed(
                "A claim was specified, but the message is not currently claimed."
            )
        return
    if current in allowed:
        return
    if strict:
        raise errors.ClaimDoesNotExist("The specified claim does not exist or has expired.")
    raise errors.MessageIsClaimed(
        "This message is claimed; it cannot be deleted without a valid claim ID."
    )
