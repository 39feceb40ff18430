"""Which addresses a webhook may reach.

A webhook makes the server send requests on a tenant's behalf, so it must
not reach what only the server can reach: cloud metadata services
(169.254.169.254, fd00:ec2::254), loopback, private and link-local ranges,
and the like are refused unless the operator allows them (for example
``127.0.0.1/32`` in tests). The check runs on resolved addresses, at send
time, and the request then goes to the address that was checked, so a name
that resolves elsewhere later (DNS rebinding) gains nothing. Without DNS,
``literal_refusal`` judges what a URL spells itself (an IP address, a
localhost name): the API refuses those when a subscription is made.

Order of the rules: the operator's ``deny`` list, the cloud metadata
services (opened only by an ``allow`` entry naming the address itself),
the operator's ``allow`` list, then the built-in refusals; anything else
is allowed.

A name's addresses are kept ``cache_seconds`` (5 s) after a lookup, so a
busy webhook costs no lookup (a thread hop of getaddrinfo) per send; every
send still checks the addresses it is about to use, and the verdict on an
address is remembered for as long as the policy lives (its lists never
change).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata and platform services, named one by one: most lie in a
# range refused below, but allowing that range (say 100.64.0.0/10 for an
# internal network) must not open the credentials service inside it, so
# only an allow entry naming the address itself opens one of these.
# 168.63.129.16 is a public address: only this list refuses it.
METADATA_SERVICES: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle... metadata
    "168.63.129.16/32",    # Azure wire server (platform agent, DNS, health probes)
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "192.0.0.192/32",      # Oracle Cloud metadata
    "fd00:ec2::254/128",   # AWS metadata over IPv6
))
# Refused unless allowed; the properties of ipaddress cover the rest
# (loopback, private, link-local, multicast, reserved, unspecified).
BUILTIN_DENIED: tuple[IPNetwork, ...] = METADATA_SERVICES + tuple(ipaddress.ip_network(n) for n in (
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
DNS_CACHE_SECONDS = 5.0
# Bounds the memory of the caches (names looked up, verdicts on addresses).
MAX_CACHED = 4096

Resolver = Callable[[str, int], Awaitable[list[str]]]
T = TypeVar("T")


class RefusedAddress(Exception):
    """The target may not be reached; sending again will not help."""


class RefusedResolution(RefusedAddress):
    """A name resolves to refused addresses only. Its DNS may change (or
    have been caught mid-change), so this counts as one failed attempt."""


def _parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {value!r}") from None
    return tuple(networks)


def _subnet_of(inner: IPNetwork, outer: IPNetwork) -> bool:
    """Whether ``inner`` lies within ``outer``; False across IP versions,
    where the standard library's subnet_of raises a TypeError."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


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


async def getaddrinfo(host: str, port: int) -> list[str]:
    """The IPv4 and IPv6 addresses of ``host``, in resolver order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = (str(sockaddr[0]).split("%", 1)[0] for family, _, _, _, sockaddr in infos
                 if family in (socket.AF_INET, socket.AF_INET6))
    return list(dict.fromkeys(addresses))


class AddressPolicy:
    """The allow and deny lists, parsed once."""

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = (), *,
                 cache_seconds: float = DNS_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 resolver: Resolver = getaddrinfo) -> None:
        self.allow = _parse_networks(allow)
        self.deny = _parse_networks(deny)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.resolver = resolver
        self._names: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._verdicts: dict[str, str | None] = {}
        # host text -> the IP address it spells, "" for a name.
        self._literals: dict[str, str] = {}

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
            for service in METADATA_SERVICES:
                if (candidate.version == service.version and candidate in service
                        and not any(_subnet_of(network, service) for network in self.allow)):
                    return f"{ip} is in the refused range {service} (a cloud metadata service)"
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

    def _remembered_refusal(self, address: str) -> str | None:
        if address in self._verdicts:
            return self._verdicts[address]
        return self._remember(self._verdicts, address, self.refusal(address))

    @staticmethod
    def _remember(cache: dict[str, T], key: str, value: T) -> T:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = value
        return value

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` that may be reached, in resolver order;
        raises RefusedAddress when there are none (OSError when the name
        does not resolve: that may pass, so it is worth a retry)."""
        literal = self._literals.get(host)
        if literal is None:
            ip = _ip_literal(host.strip("[]"))
            literal = self._remember(self._literals, host, str(ip) if ip is not None else "")
        if literal:
            reason = self._remembered_refusal(literal)
            if reason:
                raise RefusedAddress(f"webhook address refused: {reason}")
            return [literal]
        allowed: list[str] = []
        reasons: list[str] = []
        for address in await self._lookup(host, port):
            reason = self._remembered_refusal(address)
            if reason:
                reasons.append(reason)
            else:
                allowed.append(address)
        if not allowed:
            detail = "; ".join(dict.fromkeys(reasons)) or "no IPv4 or IPv6 address"
            raise RefusedResolution(f"webhook address refused: {host} resolves to {detail}")
        return allowed

    def literal_refusal(self, host: str) -> str | None:
        """Why ``host`` may not be reached, judged without DNS: an IP
        literal in a refused range, or a localhost name when loopback is
        refused. None for an allowed literal and for any other name (only
        a lookup at send time can tell)."""
        addresses = literal_addresses(host)
        if not addresses:
            return None
        reasons = [self._remembered_refusal(address) for address in addresses]
        if all(reasons):
            return "; ".join(dict.fromkeys(r for r in reasons if r))
        return None

    async def _lookup(self, host: str, port: int) -> list[str]:
        """The name's addresses, from the cache while they are fresh. Only
        answers are kept: a failed lookup is tried again at the next send."""
        key = (host, port)
        now = self.clock()
        cached = self._names.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self.resolver(host, port)
        if self.cache_seconds > 0:
            if len(self._names) >= MAX_CACHED:
                self._names.clear()
            self._names[key] = (now + self.cache_seconds, addresses)
        return addresses


def _ip_literal(host: str) -> IPAddress | None:
    # A name cannot hold ":" and an IPv4 address starts with a digit: most
    # names are told apart without ip_address() raising for each.
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def literal_addresses(host: str) -> list[str]:
    """The addresses ``host`` names without DNS: an IP address, in any
    notation getaddrinfo would also take (``127.1``, ``2130706433``,
    ``0x7f.0.0.1``), or loopback for ``localhost`` and names under
    ``.localhost`` (RFC 6761); [] for a name only DNS can answer."""
    host = host.strip("[]").split("%", 1)[0]
    ip = _ip_literal(host)
    if ip is not None:
        return [str(ip)]
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1", "::1"]
    if name and all(c in "0123456789abcdefx." for c in name) and name[0].isdigit():
        try:  # inet_aton's shorthands: what the resolver would turn into an address
            return [socket.inet_ntoa(socket.inet_aton(name))]
        except OSError:
            return []
    return []
