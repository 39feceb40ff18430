"""Publish and listen across the processes of one host (DataDriver.publish
and listen for SQLite).

SQLite has no server to carry messages between processes, and the
processes sharing a database file all run on one host: ``serve --workers
N``, a separate ``tidings notifier``, the admin CLI. So the bus of a file
is a set of Unix stream sockets, one per listening process:

- a process that listens binds an abstract socket (Linux: a name, not a
  file, released by the kernel when the process dies), its *node*, and
  for each channel it listens on drops an empty marker file
  ``<node>@<channel>`` in ``<database>-bus/``;
- a publish hands the message to this process's receivers, then writes
  it, framed, to every other node marked for that channel, over a kept
  connection; a node whose socket refuses the connection is gone, and its
  markers are removed;
- a node accepts connections only from processes of its own user (the
  peer's credentials, SO_PEERCRED): an abstract socket has no file
  permissions to keep other local users out.

So a message costs nothing in processes that do not listen to its channel:
the notices of posts (for long polls) go only to processes with a watch,
a WebSocket push only to the process holding the socket. The receiver
count a publish returns is exact within the process, so a publisher knows
at once that nobody listens; when other processes listen on the channel it
is None. As the DataDriver contract says, the bus is at most once: a frame
written to a process that dies meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from tidings.storage.base import Receive

log = logging.getLogger(__name__)

# A frame: its length after this header, the channel's length, the channel, the message.
_HEADER = struct.Struct(">IB")
# The directory's mtime has the kernel clock's coarse granularity: two
# markers added within one tick leave it unchanged, so a listing younger
# than this is read again rather than trusted.
_SETTLE_NS = 1_000_000_000


class LocalBus:
    """The bus of one database file, as seen from this process."""

    def __init__(self, key: str) -> None:
        self.directory = Path(key + "-bus")
        self._prefix = "\0tidings-bus-" + hashlib.sha256(key.encode()).hexdigest()[:24] + "-"
        self._receivers: dict[str, set[Receive]] = {}
        # While this process listens: its node, server and accepted connections.
        self.node: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepted: set[asyncio.StreamWriter] = set()
        # Connections to other nodes, on the loop they were opened on.
        self._peers: dict[str, asyncio.StreamWriter] = {}
        self._peers_loop: asyncio.AbstractEventLoop | None = None
        self._listing: list[tuple[str, str]] = []
        self._listing_mtime = -1
        self._sending: set[asyncio.Task[int | None]] = set()

    # --- publishing ---------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> int | None:
        heard = self._deliver(channel, message)
        nodes = self.listeners_elsewhere(channel)
        if not nodes:
            return heard
        frame = _frame(channel, message)
        for node in nodes:
            await self._send(node, frame)
        return None

    def publish_soon(self, channel: str, message: bytes) -> None:
        """``publish`` from synchronous code on the event loop; fire and forget."""
        task = asyncio.get_running_loop().create_task(self.publish(channel, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def listeners_elsewhere(self, channel: str) -> list[str]:
        """The nodes of the other processes listening on ``channel``."""
        return [node for node, marked in self._markers() if marked == channel]

    def _markers(self) -> list[tuple[str, str]]:
        """(node, channel) of the other processes' markers; one stat while
        the directory is unchanged."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._listing_mtime or time.time_ns() - mtime < _SETTLE_NS:
            try:
                names = os.listdir(self.directory)
            except FileNotFoundError:
                names = []
            markers = (name.partition("@") for name in names)
            self._listing = [(node, channel) for node, _, channel in markers
                             if channel and node != self.node]
            self._listing_mtime = mtime
        return self._listing

    async def _send(self, node: str, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._peers_loop is not loop:
            # Opened on another (perhaps closed) loop: unusable here.
            self._peers = {}
            self._peers_loop = loop
        writer = self._peers.get(node)
        if writer is None or writer.is_closing():
            try:
                _, writer = await _connect(self._prefix + node)
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(node)
                return
            except OSError as exc:
                log.warning("bus: cannot reach process %s: %s", node, exc)
                return
            self._peers[node] = writer
        try:
            writer.write(frame)
            await writer.drain()
        except OSError as exc:
            log.debug("bus: lost the connection to %s: %s", node, exc)
            self._peers.pop(node, None)
            writer.close()

    def _forget(self, node: str) -> None:
        """``node``'s process is gone (nothing is bound to its name)."""
        self._peers.pop(node, None)
        for marked, channel in self._markers():
            if marked == node:
                _unlink(self.directory / f"{node}@{channel}")

    # --- listening ----------------------------------------------------------

    def listen(self, channel: str, receive: Receive) -> AbstractAsyncContextManager[None]:
        return self._listen(channel, receive)

    @asynccontextmanager
    async def _listen(self, channel: str, receive: Receive) -> AsyncIterator[None]:
        if self._loop is not asyncio.get_running_loop():
            await self._start()
        receivers = self._receivers.setdefault(channel, set())
        if not receivers and self.node is not None:
            (self.directory / f"{self.node}@{channel}").touch()
        receivers.add(receive)
        try:
            yield
        finally:
            left = self._receivers.get(channel)
            if left is not None:
                left.discard(receive)
                if not left:
                    del self._receivers[channel]
                    if self.node is not None:
                        _unlink(self.directory / f"{self.node}@{channel}")
            if not self._receivers:
                await self._stop()

    async def _start(self) -> None:
        """Be reachable by the other processes. Bound, listening and marked
        before the first await: a listener entering meanwhile finds the bus
        started, and what other processes send waits in the socket's
        backlog until the server accepts it."""
        self._abandon()
        node = secrets.token_hex(8)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        sock = _bound(self._prefix + node)
        self._loop = asyncio.get_running_loop()
        self.node = node
        self._sock = sock
        for channel in self._receivers:  # left from a bus on another loop
            (self.directory / f"{node}@{channel}").touch()
        server = await asyncio.start_unix_server(self._serve, sock=sock)
        if self._sock is not sock:  # abandoned while the server started
            server.close()
            return
        self._server = server

    async def _stop(self) -> None:
        server = self._server
        self._abandon()
        if server is not None:
            await server.wait_closed()

    def _abandon(self) -> None:
        """Stop listening: markers first, so no publisher picks this node again."""
        if self.node is not None:
            for channel in self._receivers:
                _unlink(self.directory / f"{self.node}@{channel}")
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        for writer in self._accepted:
            writer.close()
        self._accepted.clear()
        self._server = None
        self._sock = None
        self._loop = None
        self.node = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer):
            # Abstract sockets have no file permissions: any local user could
            # connect, and a frame on a sockets.* channel reaches WebSockets.
            log.warning("bus: refused a connection from another user")
            writer.close()
            return
        self._accepted.add(writer)
        try:
            while True:
                size, channel_size = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                body = await reader.readexactly(size)
                self._deliver(body[:channel_size].decode(), body[channel_size:])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the publishing process closed its end or died
        except UnicodeDecodeError:
            log.warning("bus: dropped a connection that sent a malformed frame")
        except asyncio.CancelledError:
            # The loop is shutting down. Ending quietly: Python 3.11's
            # streams report a cancelled connection handler as an error.
            pass
        finally:
            self._accepted.discard(writer)
            writer.close()

    def _deliver(self, channel: str, message: bytes) -> int:
        receivers = list(self._receivers.get(channel, ()))
        if receivers:
            loop = asyncio.get_running_loop()
            for receive in receivers:
                # Later, as a network bus would: the publisher never runs a
                # receiver's code inside its own call.
                loop.call_soon(_call, receive, message)
        return len(receivers)


# The sockets are made here rather than from a path by the event loop:
# uvloop refuses abstract names (EINVAL) where asyncio takes them.


def _bound(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _connect(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, name)
    except OSError:
        sock.close()
        raise
    return await asyncio.open_unix_connection(sock=sock)


_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Whether the process at the other end runs as this process's user."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    _, uid, _ = _CREDENTIALS.unpack(credentials)
    return uid == os.getuid()


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _frame(channel: str, message: bytes) -> bytes:
    name = channel.encode()
    return _HEADER.pack(len(name) + len(message), len(name)) + name + message


def _call(receive: Receive, message: bytes) -> None:
    try:
        receive(message)
    except Exception:  # one receiver's bug must not stop the others
        log.exception("a bus receiver failed")


_BUSES: dict[str, LocalBus] = {}


def bus_for(key: str) -> LocalBus:
    """The bus of one database, by its file's resolved path."""
    bus = _BUSES.get(key)
    if bus is None:
        bus = _BUSES[key] = LocalBus(key)
    return bus
