"""SQLite across processes on one file (``serve --workers N``, a separate
``tidings notifier``): the bus of storage/sqlite/bus.py carries publishes, and the
notices of posts that wake long polls, between them, as Redis pub/sub and
PostgreSQL LISTEN/NOTIFY do for the other drivers.

The other process is a real one (tests/support/bus_peer.py) on the same file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.storage.test_bus import Inbox
from tests.support.clock import FakeClock
from tidings.storage.base import DataDriver
from tidings.storage.registry import driver_from_url
from tidings.storage.sqlite.driver import SqliteDriver

ROOT = Path(__file__).resolve().parents[2]
# Another process answers in milliseconds; this only bounds a failure.
PROMPT = 10.0


class Peer:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    async def command(self, line: str, answer: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        heard = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), PROMPT)
        assert heard.strip() == answer


@asynccontextmanager
async def peer(url: str) -> AsyncIterator[Peer]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.bus_peer", url], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), PROMPT)
        assert ready.strip() == "ready"
        yield Peer(process)
    finally:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(PROMPT)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    driver = driver_from_url(f"sqlite:///{tmp_path}/shared.db", sync="normal",
                             clock=FakeClock())
    await driver.open()
    try:
        assert isinstance(driver, SqliteDriver)
        yield driver
    finally:
        await driver.close()


def url_of(driver: DataDriver) -> str:
    assert isinstance(driver, SqliteDriver)
    return f"sqlite:///{driver.path}"


@pytest.mark.parametrize("size", [0, 100, 1_000_000])
async def test_a_publish_reaches_another_process_and_its_answer_comes_back(
    local: SqliteDriver, size: int,
) -> None:
    inbox = Inbox()
    message = os.urandom(size)
    async with local.listen("echoed", inbox), peer(url_of(local)):
        assert await local.publish("echo", message) is None  # another process may hear it
        assert await inbox.next(PROMPT) == message
        await local.publish("echo", b"second")
        assert await inbox.next(PROMPT) == b"second"


async def test_a_post_by_another_process_wakes_a_watch_here(local: SqliteDriver) -> None:
    async with peer(url_of(local)) as other, local.watch("p", "q") as watch:
        waiter = asyncio.ensure_future(watch.wait(60))
        await other.command("post p q", "posted")
        assert await asyncio.wait_for(waiter, PROMPT) is True


async def test_a_post_to_another_queue_wakes_nobody(local: SqliteDriver) -> None:
    async with peer(url_of(local)) as other, local.watch("p", "q") as watch:
        await other.command("post p elsewhere", "posted")
        await other.command("post other-project q", "posted")
        assert await watch.wait(0.3) is False


async def test_a_process_that_died_is_forgotten(local: SqliteDriver) -> None:
    async with local.listen("echoed", Inbox()), peer(url_of(local)) as other:
        bus = local.bus
        assert len(bus.listeners_elsewhere("echo")) == 1
        node = bus.listeners_elsewhere("echo")[0]
        other.process.send_signal(signal.SIGKILL)
        other.process.wait(PROMPT)
        # Its socket went with it; its marker is removed by the next publish.
        assert await local.publish("echo", b"anyone?") is None
        assert not [p for p in bus.directory.iterdir() if p.name.startswith(node)]
        assert await local.publish("echo", b"anyone?") == 0


async def test_only_processes_listening_on_a_channel_are_sent_to(local: SqliteDriver) -> None:
    async with peer(url_of(local)):
        bus = local.bus
        assert len(bus.listeners_elsewhere("echo")) == 1
        assert bus.listeners_elsewhere("echoed") == []
        assert bus.listeners_elsewhere("sqlite.posted") == []  # the peer has no watch
        # Nobody listens on it anywhere: the count is exact.
        assert await local.publish("echoed", b"to nobody") == 0


async def test_a_process_that_stops_listening_leaves_no_marker(local: SqliteDriver) -> None:
    async with peer(url_of(local)):
        bus = local.bus
        assert len(bus.listeners_elsewhere("echo")) == 1
    assert bus.listeners_elsewhere("echo") == []


async def test_listeners_entering_together_make_one_node(local: SqliteDriver) -> None:
    bus = local.bus
    release = asyncio.Event()

    async def hold(channel: str) -> None:
        async with local.listen(channel, Inbox()):
            await release.wait()

    holders = [asyncio.ensure_future(hold(f"together.{i}")) for i in range(5)]
    for _ in range(100):
        if len(bus._receivers) == 5:
            break
        await asyncio.sleep(0.01)
    try:
        assert len(bus._receivers) == 5
        # One node, marked for each of the five channels.
        assert sorted(p.name for p in bus.directory.iterdir()) == [
            f"{bus.node}@together.{i}" for i in range(5)]
        async with peer(url_of(local)):
            assert len(bus.listeners_elsewhere("echo")) == 1  # the peer's; ours is not listed
    finally:
        release.set()
        await asyncio.gather(*holders)
    assert not any(bus.directory.iterdir())


# Connects to a node's socket and writes one frame on channel "echoed" (the
# node may close the connection first: it checks who connects at once).
_INTRUDER = """
import socket, struct, sys
name, channel, message = "\\0" + sys.argv[1], b"echoed", b"forged"
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(name)
try:
    sock.sendall(struct.pack(">IB", len(channel) + len(message), len(channel)) + channel + message)
except (BrokenPipeError, ConnectionResetError):
    pass  # the node refused (closed) before the frame was written: refused all the same
sock.close()
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another user")
async def test_a_process_of_another_user_cannot_publish(local: SqliteDriver) -> None:
    inbox = Inbox()
    async with local.listen("echoed", inbox):
        bus = local.bus
        address = (bus._prefix + str(bus.node)).lstrip("\0")  # abstract: the NUL is added back
        # Another user's process (a system Python it can run) connects
        # and writes a well-formed frame: the node refuses it.
        intruder = await asyncio.create_subprocess_exec(
            "/usr/bin/python3", "-c", _INTRUDER, address, user="nobody")
        assert await asyncio.wait_for(intruder.wait(), PROMPT) == 0
        assert await inbox.nothing(0.5)
        # The same frame from this user arrives.
        mine = await asyncio.create_subprocess_exec(sys.executable, "-c", _INTRUDER, address)
        assert await asyncio.wait_for(mine.wait(), PROMPT) == 0
        assert await inbox.next(PROMPT) == b"forged"
