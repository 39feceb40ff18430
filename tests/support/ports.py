"""Free 127.0.0.1 ports for the servers the tests start.

A port from ``bind(("127.0.0.1", 0))`` comes out of the kernel's ephemeral
range, the range every outgoing connection takes its local port from. In the
time between choosing such a port and the server binding it, any connection
the session opens (to a Redis, a webhook receiver, a cluster node talking to
another) may take it, and the server exits with "Address already in use".
Ports below the ephemeral range are never given to outgoing connections, so
a port chosen there stays free unless another listener binds it first.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Redis Cluster talks between nodes on port + 10000.
CLUSTER_BUS_OFFSET = 10000

# Below this are well-known services (and the machine's own Redis on 6379).
LOWEST = 10000

_random = random.SystemRandom()  # unaffected by a test that seeds `random`

# Every port handed out in this process: a server may hold its port unbound
# for a while (chosen, not yet started; stopped, to be restarted on it), so
# "free" is not enough. A session uses a few hundred of ~12,000.
_handed_out: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port(*, with_bus: bool = False) -> int:
    """A free port below the ephemeral range, and with ``with_bus`` its
    Redis Cluster bus port (port + 10000) free too."""
    offset = CLUSTER_BUS_OFFSET if with_bus else 0
    top = ephemeral_range()[0] - offset
    if top - LOWEST < 1000:  # an unusual ephemeral range: take the kernel's pick
        for _ in range(200):
            port = _kernel_port()
            if not with_bus or (port + offset < 65536 and port_is_free(port + offset)):
                return port
        raise RuntimeError("no free port pair for a Redis Cluster node")
    for _ in range(500):
        port = _random.randrange(LOWEST, top)
        if port in _handed_out or (with_bus and port + offset in _handed_out):
            continue
        if port_is_free(port) and (not with_bus or port_is_free(port + offset)):
            _handed_out.update((port, port + offset))
            return port
    raise RuntimeError(f"no free 127.0.0.1 port in {LOWEST}-{top}")
