"""The bus between the processes of one backend (DataDriver.publish and
listen): Redis pub/sub, PostgreSQL LISTEN/NOTIFY, and for SQLite Unix
sockets between processes (test_sqlite_processes.py crosses them)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

# Backends that carry messages over the network take milliseconds.
PROMPT = 5.0
QUIET = 0.2


def channel() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


class Inbox:
    """What a listener heard, with a wait that has a deadline."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, message: bytes) -> None:
        self.messages.put_nowait(message)

    async def next(self, timeout: float = PROMPT) -> bytes:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def nothing(self, quiet: float = QUIET) -> bool:
        try:
            await asyncio.wait_for(self.messages.get(), quiet)
        except TimeoutError:
            return True
        return False


async def test_a_listener_hears_what_is_published(driver):
    name, inbox = channel(), Inbox()
    async with driver.listen(name, inbox):
        heard = await driver.publish(name, b"hello")
        assert heard is None or heard == 1
        assert await inbox.next() == b"hello"
        assert await inbox.nothing()


@pytest.mark.parametrize("size", [0, 1, 5_000, 6_000, 300_000])
async def test_messages_of_any_size_and_any_bytes_arrive_whole(driver, size):
    name, inbox = channel(), Inbox()
    message = os.urandom(size)
    async with driver.listen(name, inbox):
        await driver.publish(name, message)
        assert await inbox.next() == message


async def test_every_listener_of_the_channel_hears_it(driver):
    name, first, second = channel(), Inbox(), Inbox()
    async with driver.listen(name, first), driver.listen(name, second):
        heard = await driver.publish(name, b"both")
        assert heard is None or heard >= 1
        assert await first.next() == b"both"
        assert await second.next() == b"both"


async def test_other_channels_are_not_heard(driver):
    name, inbox = channel(), Inbox()
    async with driver.listen(name, inbox):
        await driver.publish(name + "x", b"elsewhere")
        await driver.publish(channel(), b"elsewhere")
        assert await inbox.nothing()
        await driver.publish(name, b"here")
        assert await inbox.next() == b"here"


async def test_nothing_is_heard_after_leaving(driver):
    name, inbox, witness = channel(), Inbox(), Inbox()
    async with driver.listen(name, witness):
        async with driver.listen(name, inbox):
            await driver.publish(name, b"one")
            assert await inbox.next() == b"one"
        await driver.publish(name, b"two")
        # The remaining listener got it, so the one that left would have too.
        assert await witness.next() == b"one"
        assert await witness.next() == b"two"
        assert await inbox.nothing()


async def test_publishing_to_nobody_is_not_an_error(driver):
    heard = await driver.publish(channel(), b"into the void")
    assert heard is None or heard == 0


async def test_messages_keep_their_order_from_one_publisher(driver):
    name, inbox = channel(), Inbox()
    async with driver.listen(name, inbox):
        for n in range(20):
            await driver.publish(name, str(n).encode())
        assert [await inbox.next() for _ in range(20)] == [str(n).encode() for n in range(20)]
