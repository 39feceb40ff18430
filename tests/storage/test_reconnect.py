"""The background reconnect loop of the bus listeners stops when cancelled,
even when a try swallows the cancel (storage/common/reconnect.py)."""

from __future__ import annotations

import asyncio

import pytest

from tidings.storage.common.reconnect import until_connected


async def test_reconnects_until_a_try_succeeds() -> None:
    tries: list[int] = []
    pauses: list[float] = []

    async def connect() -> None:
        tries.append(len(tries))
        if len(tries) < 4:
            raise ConnectionError("refused")

    await until_connected(connect, failures=(ConnectionError,), first_delay=0.001,
                          max_delay=0.002, on_failure=lambda exc, pause: pauses.append(pause))
    assert len(tries) == 4
    assert pauses == [0.001, 0.002, 0.002]  # doubled, then capped


async def test_an_unexpected_error_is_not_retried() -> None:
    async def connect() -> None:
        raise ValueError("a bug, not a lost connection")

    with pytest.raises(ValueError):
        await until_connected(connect, failures=(ConnectionError,), first_delay=0.001,
                              max_delay=0.001)


@pytest.mark.parametrize("swallow_as", ["failure", "success"])
async def test_a_cancel_swallowed_by_a_try_still_stops_the_loop(swallow_as: str) -> None:
    """What hung a driver's close: the client library turned the cancel
    into its own error (or finished the try anyway), and the loop went on."""
    trying = asyncio.Event()

    async def connect() -> None:
        trying.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallow_as == "failure":
                raise ConnectionError("the library's own error") from None
            return  # done at the same moment: the cancel is lost

    task = asyncio.create_task(until_connected(
        connect, failures=(ConnectionError,), first_delay=3600, max_delay=3600))
    await trying.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
