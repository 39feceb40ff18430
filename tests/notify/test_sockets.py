"""The registry of this process's subscribed WebSockets."""

from __future__ import annotations

from tidings.notify.sockets import SocketRegistry, socket_id_of, subscriber_for


async def test_push_reaches_the_registered_socket_only():
    registry = SocketRegistry()
    frames = []

    async def send(frame):
        frames.append(frame)

    registry.register("s1", send)
    assert "s1" in registry
    assert await registry.push("s1", {"body": 1}) is True
    assert await registry.push("s2", {"body": 2}) is False
    registry.unregister("s1")
    registry.unregister("s1")  # idempotent
    assert await registry.push("s1", {"body": 3}) is False
    assert frames == [{"body": 1}]


async def test_a_failing_send_counts_as_not_delivered():
    registry = SocketRegistry()

    async def broken(frame):
        raise ConnectionError("socket closed")

    registry.register("s1", broken)
    assert await registry.push("s1", {}) is False


def test_subscriber_names():
    assert subscriber_for("abc") == "websocket:abc"
    assert socket_id_of("websocket:abc") == "abc"
    assert socket_id_of("websocket:") is None
    assert socket_id_of("http://x") is None
