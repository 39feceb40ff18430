"""``serve --workers N``: each worker listens on a socket of its own.

uvicorn's supervisor hands every worker the parent's listening socket, so
the workers share one accept queue, and the worker whose event loop wakes
first accepts every connection waiting. Keep-alive clients that connect
together (a connection pool, a load balancer, ``tidings bench --workers
32``) then land on one worker: two workers were seen holding 32 and 0, or
29 and 3, of 32 connections (``ss -tnp``), and ``--workers 2`` served
nearly everything from one process.

On Linux each worker here binds a socket of its own to the same address
with SO_REUSEPORT, and the kernel spreads new connections over the
workers' sockets by a hash of their addresses, as nginx's ``reuseport``
and gunicorn's ``--reuse-port`` do. The parent keeps its own socket bound
to the address with SO_REUSEPORT but never listens on it (the kernel
sends a socket that does not listen no connection), so the address stays
held while a worker restarts. A connection still waiting in the accept
queue of a worker that dies is reset, as it would be by any server that
dies: its client reconnects to the others.

Elsewhere (no SO_REUSEPORT, or one that does not spread connections) the
workers share the parent's socket, as uvicorn does.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

log = logging.getLogger("tidings")


def spreads_connections() -> bool:
    """Whether this system spreads connections over SO_REUSEPORT sockets
    (Linux does; the BSDs and macOS give them all to one socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_shared(sock: socket.socket, address: tuple[Any, ...]) -> None:
    """Bind ``sock`` to ``address`` so that the workers may bind theirs too."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)


def own_socket(inherited: socket.socket) -> socket.socket:
    """A socket of this worker's, bound to the address of the parent's
    (``inherited``, which this worker then closes)."""
    own = socket.socket(inherited.family, socket.SOCK_STREAM)
    try:
        bind_shared(own, inherited.getsockname())
    except OSError:
        own.close()
        raise
    inherited.close()
    return own


class OwnSocketWorker(multiprocess.Process):
    """uvicorn's worker process, serving on sockets of its own."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            own = [own_socket(sock) for sock in sockets or []]
        except OSError as exc:
            # The supervisor stops on this exit code rather than restarting
            # a worker that would fail the same way.
            log.error("a worker could not listen: %s", exc)
            sys.exit(STARTUP_FAILURE)
        super().target(own)


def run_workers(config: Any, sockets: list[socket.socket]) -> None:
    """uvicorn's supervisor of ``config.workers`` processes, each on its own
    sockets where the system spreads connections over them."""
    if not spreads_connections():
        multiprocess.Multiprocess(config, sockets=sockets).run()
        return
    # The supervisor names its worker class as a module global in every
    # place it starts one (at start, on a restart, on SIGHUP and SIGTTIN).
    shared = multiprocess.Process
    multiprocess.Process = OwnSocketWorker  # type: ignore[misc]  # a subclass of the class it replaces
    try:
        multiprocess.Multiprocess(config, sockets=sockets).run()
    finally:
        multiprocess.Process = shared  # type: ignore[misc]  # restores the class it replaced
