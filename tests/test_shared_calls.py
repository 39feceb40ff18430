"""Concurrent callers share one running call: Keystone validations of one
token, and the storage checks behind pings and readiness probes."""

from __future__ import annotations

import asyncio

import pytest

from tidings.api import system
from tidings.api.context import Service
from tidings.config import Limits
from tidings.shared_calls import SharedCalls


class GatedCall:
    """A call that runs until released, counting how often it was started."""

    def __init__(self, answer: bool = True) -> None:
        self.started = 0
        self.answer = answer
        self.release = asyncio.Event()

    async def __call__(self) -> bool:
        self.started += 1
        await self.release.wait()
        return self.answer


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # let the tasks reach their await


async def test_callers_arriving_while_a_call_runs_share_it() -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    call = GatedCall()
    waiting = [asyncio.ensure_future(calls.run("k", call)) for _ in range(20)]
    await settle()
    call.release.set()
    assert await asyncio.gather(*waiting) == [True] * 20
    assert call.started == 1


async def test_a_caller_after_the_call_ended_starts_another() -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    call = GatedCall()
    call.release.set()
    assert await calls.run("k", call)
    assert await calls.run("k", call)
    assert call.started == 2


async def test_keys_do_not_share() -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    call = GatedCall()
    waiting = [asyncio.ensure_future(calls.run(key, call)) for key in ("a", "b", "a")]
    await settle()
    call.release.set()
    await asyncio.gather(*waiting)
    assert call.started == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    call = GatedCall()
    leaving = asyncio.ensure_future(calls.run("k", call))
    staying = asyncio.ensure_future(calls.run("k", call))
    await settle()
    leaving.cancel()
    await settle()
    call.release.set()
    assert await staying
    assert leaving.cancelled()


async def test_a_failure_reaches_every_caller_and_the_next_call_runs_anew() -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    started = 0

    async def failing() -> bool:
        nonlocal started
        started += 1
        await asyncio.sleep(0)
        raise ConnectionError("down")

    results = await asyncio.gather(*(calls.run("k", failing) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert started == 1
    with pytest.raises(ConnectionError):
        await calls.run("k", failing)
    assert started == 2


class GatedStorage:
    """Only what readiness asks of a storage."""

    def __init__(self, call: GatedCall) -> None:
        self.is_alive = call

    def problem(self) -> str | None:
        return None


@pytest.mark.parametrize("alive", [True, False])
async def test_concurrent_readiness_checks_ask_the_storage_once(alive: bool) -> None:
    call = GatedCall(answer=alive)
    service = Service(storage=GatedStorage(call), limits=Limits())  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(system.readiness(service)) for _ in range(10)]
    await settle()
    call.release.set()
    reasons = await asyncio.gather(*waiting)
    assert reasons == [None if alive else "the storage does not answer"] * 10
    assert call.started == 1


@pytest.mark.parametrize("forget", ["one", "all"])
async def test_after_a_forget_callers_start_anew_and_the_waiting_keep_theirs(
        forget: str) -> None:
    calls: SharedCalls[str, bool] = SharedCalls()
    before, after = GatedCall(answer=False), GatedCall(answer=True)
    waiting = asyncio.ensure_future(calls.run("k", before))
    await settle()
    if forget == "one":
        calls.forget("k")
    else:
        calls.forget_all()
    later = asyncio.ensure_future(calls.run("k", after))
    await settle()
    before.release.set()
    assert await waiting is False
    # The forgotten call's end leaves the new one running for newcomers.
    own = GatedCall(answer=False)  # what the newcomer would get on its own
    own.release.set()
    newcomer = asyncio.ensure_future(calls.run("k", own))
    await settle()
    after.release.set()
    assert await later is True
    assert await newcomer is True
    assert (before.started, after.started, own.started) == (1, 1, 0)
