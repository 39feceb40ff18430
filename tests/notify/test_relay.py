"""The relay between processes, over a real storage bus (SQLite's
in-process one: two relays with registries of their own stand for two
processes; tests/notify/test_socket_relay.py runs real processes on Redis
and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.notify.relay import Relay
from tidings.notify.sockets import SocketRegistry, node_of
from tidings.storage.base import DataDriver
from tidings.storage.registry import driver_from_url


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[DataDriver]:
    driver = driver_from_url(f"sqlite:///{tmp_path}/relay.db", sync="off")
    await driver.open()
    yield driver
    await driver.close()


class Process:
    """One process's registry, a socket in it, and its relay."""

    def __init__(self, storage: DataDriver) -> None:
        self.registry = SocketRegistry()
        self.relay = Relay(storage, self.registry, ack_timeout=2.0)
        self.frames: list[dict] = []

    def open_socket(self) -> str:
        socket_id = self.registry.new_socket_id()

        async def send(frame: dict) -> None:
            self.frames.append(frame)

        self.registry.register(socket_id, send)
        return socket_id


async def test_socket_ids_name_their_process():
    registry = SocketRegistry()
    first, second = registry.new_socket_id(), registry.new_socket_id()
    assert first != second
    assert node_of(first) == node_of(second) == registry.node
    assert SocketRegistry().node != registry.node
    assert node_of("0123456789abcdef") is None  # an id of another form


async def test_a_frame_reaches_a_socket_of_another_process_and_is_acknowledged(storage):
    holder, sender = Process(storage), Process(storage)
    assert await holder.relay.start() and await sender.relay.start()
    socket_id = holder.open_socket()
    try:
        assert await sender.relay.push(socket_id, {"body": 1}) is True
        assert holder.frames == [{"body": 1}]
        assert sender.frames == []
    finally:
        await sender.relay.stop()
        await holder.relay.stop()


async def test_a_socket_that_is_gone_is_answered_not_written(storage):
    holder, sender = Process(storage), Process(storage)
    await holder.relay.start()
    await sender.relay.start()
    socket_id = holder.open_socket()
    holder.registry.unregister(socket_id)
    try:
        began = time.monotonic()
        assert await sender.relay.push(socket_id, {"body": 1}) is False
        assert time.monotonic() - began < 1.0  # answered, not timed out
        assert holder.frames == []
    finally:
        await sender.relay.stop()
        await holder.relay.stop()


async def test_a_process_that_is_gone_means_not_delivered(storage):
    holder, sender = Process(storage), Process(storage)
    await sender.relay.start()
    socket_id = holder.open_socket()  # its relay never listens: a dead process
    try:
        assert await sender.relay.push(socket_id, {"body": 1}) is False
        assert holder.frames == []
    finally:
        await sender.relay.stop()


async def test_a_holder_that_never_answers_times_out(storage):
    sender = Process(storage)
    silent = Process(storage)
    silent.relay._answer = lambda push: _never()  # type: ignore[assignment]
    await sender.relay.start()
    await silent.relay.start()
    sender.relay.ack_timeout = 0.3
    socket_id = silent.open_socket()
    try:
        began = time.monotonic()
        assert await sender.relay.push(socket_id, {"body": 1}) is False
        assert 0.25 <= time.monotonic() - began < 2.0
    finally:
        await sender.relay.stop()
        await silent.relay.stop()


async def _never() -> None:
    return None


async def test_local_sockets_need_no_bus(storage):
    process = Process(storage)  # not started: no listening at all
    socket_id = process.open_socket()
    assert await process.relay.push(socket_id, {"body": "here"}) is True
    assert process.frames == [{"body": "here"}]
