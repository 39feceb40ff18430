"""The test servers' ports: chosen where outgoing connections never land,
and a Redis whose first port was taken meanwhile moves to another."""

from __future__ import annotations

import socket

import pytest

from tests.support.ports import CLUSTER_BUS_OFFSET, LOWEST, ephemeral_range, free_port
from tests.support.redis_server import PortTaken, RedisServer, _command


def test_free_ports_lie_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_range()
    for _ in range(50):
        assert LOWEST <= free_port() < low
        port = free_port(with_bus=True)
        assert port + CLUSTER_BUS_OFFSET < low


def occupy(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    return listener


def test_a_first_start_moves_off_a_port_taken_since_it_was_chosen() -> None:
    server = RedisServer(persistent=False)
    chosen = server.port
    with occupy(chosen):
        try:
            server.start()
            assert server.port != chosen
            assert _command(server.port, "PING").startswith(b"+PONG")
        finally:
            server.cleanup()


def test_a_restart_keeps_its_port_even_when_it_is_taken() -> None:
    server = RedisServer(persistent=False)
    try:
        server.start()
        port = server.port
        server.stop()
        with occupy(port), pytest.raises(PortTaken):
            server.start()
        assert server.port == port
    finally:
        server.cleanup()


def test_a_port_is_handed_out_once_per_session() -> None:
    # A chosen port may stay unbound until its server starts (or restarts):
    # no later choice may take it meanwhile.
    ports = [free_port() for _ in range(200)]
    with_bus = [free_port(with_bus=True) for _ in range(50)]
    buses = [port + CLUSTER_BUS_OFFSET for port in with_bus]
    everything = ports + with_bus + buses
    assert len(set(everything)) == len(everything)
