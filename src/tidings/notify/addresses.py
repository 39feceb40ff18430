"""Which addresses a webhook may reach.

A webhook makes the server send requests on a tenant's behalf, so it must
not reach what only the server can reach: cloud metadata services
(169.254.169.254, fd00:ec2::254), loopback, private and link-local ranges,
and the like are refused unless the operator allows them (for example
``127.0.0.1/32`` in tests). The check runs on resolved addresses, at send
time, and the request then goes to the address that was checked, so a name
that resolves elsewhere later (DNS rebinding) gains nothing.

Order of the rules: the operator's ``deny`` list, then the operator's
``allow`` list, then the built-in refusals; anything else is allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused unless allowed; the properties of ipaddress cover the rest
# (loopback, private, link-local, multicast, reserved, unspecified).
BUILTIN_DENIED: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",      # carrier-grade NAT
    "127.0.0.0/8",
    "169.254.0.0/16",     # link-local, cloud metadata
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",        # multicast and reserved
    "::/128",
    "::1/128",
    "fc00::/7",           # unique local, fd00:ec2::254 among them
    "fe80::/10",
    "ff00::/8",
))
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedAddress(Exception):
    """The target may not be reached; sending again will not help."""


def _parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {value!r}") from None
    return tuple(networks)


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class AddressPolicy:
    """The allow and deny lists, parsed once."""

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self.allow = _parse_networks(allow)
        self.deny = _parse_networks(deny)

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why ``address`` may not be reached, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        candidates: list[IPAddress] = [ip]
        embedded = _embedded_v4(ip)
        if embedded is not None:
            candidates.append(embedded)
        for candidate in candidates:
            for network in self.deny:
                if candidate.version == network.version and candidate in network:
                    return f"{ip} is in the denied range {network}"
        for candidate in candidates:
            for network in self.allow:
                if candidate.version == network.version and candidate in network:
                    return None
        for candidate in candidates:
            for network in BUILTIN_DENIED:
                if candidate.version == network.version and candidate in network:
                    return f"{ip} is in the refused range {network}"
            if (candidate.is_loopback or candidate.is_private or candidate.is_link_local
                    or candidate.is_multicast or candidate.is_reserved
                    or candidate.is_unspecified or getattr(candidate, "is_site_local", False)):
                return f"{ip} is not a public address"
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` that may be reached, in resolver order;
        raises RefusedAddress when there are none (OSError when the name
        does not resolve: that may pass, so it is worth a retry)."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            reason = self.refusal(literal)
            if reason:
                raise RefusedAddress(f"webhook address refused: {reason}")
            return [str(literal)]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        allowed: list[str] = []
        reasons: list[str] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(sockaddr[0]).split("%", 1)[0]
            reason = self.refusal(address)
            if reason:
                reasons.append(reason)
            elif address not in allowed:
                allowed.append(address)
        if not allowed:
            detail = "; ".join(dict.fromkeys(reasons)) or "no IPv4 or IPv6 address"
            raise RefusedAddress(f"webhook address refused: {host} resolves to {detail}")
        return allowed
