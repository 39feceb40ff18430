"""Which webhook targets a subscription may name: the API's side of
``tidings.notify.addresses`` (one policy for both).

A webhook could otherwise make the service reach its own network: the
cloud metadata services (169.254.169.254, 168.63.129.16, fd00:ec2::254...),
loopback, private ranges. Order of the rules: ``notifications.denied_networks``,
then ``notifications.allowed_networks``, then the built-in refusals; anything
else is allowed.

When a subscription is made, only what the URL spells itself is judged: an
IP address (in any notation), a localhost name, user info. A host name is
NOT resolved then, as in Zaqar: OpenStack's own suites subscribe names
that do not resolve (``http://fake:8080``), and a slow DNS must not fail a
create. The delivery worker resolves the name at each send, checks every
address and connects only to a checked one; a name that does not resolve,
or resolves to refused addresses only, is a failed attempt (retried, then
dead, with its reason in the deliveries listing).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tidings import errors
from tidings.notify.addresses import AddressPolicy
from tidings.notify.payload import PermanentFailure
from tidings.notify.webhook import parse_target


def network_list(value: Iterable[str] | str | None) -> tuple[str, ...]:
    """A networks setting: a list, or one comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(item.strip() for item in value if item and item.strip())


@functools.lru_cache(maxsize=16)
def _policy(allow: tuple[str, ...], deny: tuple[str, ...]) -> AddressPolicy:
    return AddressPolicy(allow, deny)


def address_policy(settings: Any) -> AddressPolicy:
    """The policy of a NotificationSettings (None: the built-in rules)."""
    return _policy(network_list(getattr(settings, "allowed_networks", None)),
                   network_list(getattr(settings, "denied_networks", None)))


def check_address(address: str, settings: Any) -> None:
    """ValidationFailed unless the service may send to this IP address."""
    reason = address_policy(settings).refusal(address)
    if reason:
        raise errors.ValidationFailed(
            f"The webhook target is not allowed: {reason} (internal addresses are refused; "
            "see notifications.allowed_networks)."
        )


def check_webhook_target(url: str, settings: Any) -> None:
    """Refuse (ValidationFailed) a webhook URL the delivery worker could
    never send to: not http(s) with a host, user info, or a host that
    spells a refused address. Host names pass: they are checked at send time."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise errors.ValidationFailed(f"The subscriber {url!r} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ValidationFailed(f"The subscriber {url!r} is not a webhook URL with a host.")
    # "@" anywhere in the authority, and "\\" (which some parsers read as
    # "/"), so that no parser finds a user or another host than this one.
    if "@" in parts.netloc or "\\" in parts.netloc:
        raise errors.ValidationFailed(
            "A webhook URL may not carry user info (credentials before \"@\"); "
            "send credentials with options.post_headers."
        )
    try:
        target = parse_target(url)
    except PermanentFailure as exc:
        raise errors.ValidationFailed(
            f"The subscriber {url!r} is not a valid URL: {exc}.") from None
    reason = address_policy(settings).literal_refusal(target.host)
    if reason:
        raise errors.ValidationFailed(
            f"The webhook target is not allowed: {reason} (internal addresses are refused; "
            "see notifications.allowed_networks)."
        )
