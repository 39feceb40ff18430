"""Which webhook targets a subscription may name: the API's side of
``tidings.notify.addresses`` (one policy for both).

A webhook could otherwise make the service reach its own network: the
cloud metadata service (169.254.169.254, fd00:ec2::254), loopback, private
ranges. Order of the rules: ``notifications.denied_networks``, then
``notifications.allowed_networks``, then the built-in refusals; anything
else is allowed. A host name is resolved with the event loop's getaddrinfo
when the subscription is made (400 when it resolves to no allowed address,
or not at all); the delivery worker checks again after resolving the name
at send time, since DNS can change in between.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tidings import errors
from tidings.notify.addresses import AddressPolicy, RefusedAddress


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


async def check_webhook_target(url: str, settings: Any) -> list[str]:
    """Refuse (ValidationFailed) a webhook URL whose host resolves to no
    allowed address; returns the allowed addresses."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise errors.ValidationFailed(f"The subscriber {url!r} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise errors.ValidationFailed(f"The subscriber {url!r} is not a webhook URL with a host.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        return await address_policy(settings).resolve(host, port)
    except RefusedAddress as exc:
        raise errors.ValidationFailed(
            f"The webhook target is not allowed: {exc} (internal addresses are refused; "
            "see notifications.allowed_networks)."
        ) from None
    except (OSError, UnicodeError) as exc:
        raise errors.ValidationFailed(
            f"The webhook host {host!r} could not be resolved: {exc}."
        ) from None
