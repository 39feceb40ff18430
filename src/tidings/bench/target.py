"""Where the bench sends its load, and the loopback-only safety check.

A load generator pointed at the wrong URL is a denial-of-service tool, so by
default it only talks to this machine: every address the host resolves to
must be loopback. ``--allow-remote`` is the explicit opt-out.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class TargetError(ValueError):
    """The URL is unusable or not allowed; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    tls: bool
    host: str  # as written in the URL, for TLS server name checks
    port: int
    host_header: str  # host[:port] as the Host header wants it
    base_path: str  # "" or a prefix like "/messaging", no trailing slash
    address: str = ""  # the resolved address the workers connect to

    def path(self, path: str) -> str:
        """Prefix an API path (``/v2/...``) with the URL's base path."""
        if self.base_path and not path.startswith(self.base_path + "/"):
            return self.base_path + path
        return path


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetError(f"--url must be http:// or https://, got {url!r}")
    if not parts.hostname:
        raise TargetError(f"--url has no host: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetError(f"--url has a bad port: {url!r}") from exc
    return Target(
        url=url,
        tls=parts.scheme == "https",
        host=parts.hostname,
        port=port,
        host_header=parts.netloc.rpartition("@")[2],
        base_path=parts.path.rstrip("/"),
    )


def is_loopback_address(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def resolve_addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_target(url: str, allow_remote: bool = False) -> Target:
    """Parse and resolve the URL; refuse non-loopback hosts unless allowed.

    The first resolved address is pinned so every worker connects to the
    address that was checked, not whatever a later lookup returns.
    """
    target = parse_target(url)
    addresses = resolve_addresses(target.host, target.port)
    remote = [a for a in addresses if not is_loopback_address(a)]
    if remote and not allow_remote:
        raise TargetError(
            f"refusing to load {target.host!r}: it resolves to {', '.join(remote)}, "
            "which is not loopback (127.0.0.0/8 or ::1); pass --allow-remote to "
            "bench a server on another machine"
        )
    return Target(**{**target.__dict__, "address": addresses[0]})
