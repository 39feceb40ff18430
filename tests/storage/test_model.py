"""A model-based stateful test of queue, message and claim semantics.

Hypothesis drives random sequences of posts, listings, claims, deletes,
releases, renewals, pops, reads by id and clock moves against every driver
and against a small in-memory model of what base.py promises; after each
step the driver's listing and stats must equal the model's.

The drivers are async and live on the test's event loop. Hypothesis's
stateful runner is synchronous, so it runs in a worker thread and hands
each driver call back to the loop (``run_coroutine_threadsafe``), which
the test keeps free by awaiting the thread. Each example works in a fresh
project, so examples never see each other's data and the driver is opened
once per test.

The budget is small and derandomized, so CI runs the same examples every
time: see SETTINGS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.storage.helpers import CLIENT, OTHER_CLIENT
from tests.support.clock import FakeClock
from tidings import errors
from tidings.storage.base import DataDriver, NewMessage

T = TypeVar("T")

QUEUE = "q"
CLIENTS = (CLIENT, OTHER_CLIENT)

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=False,
)

# Whole seconds: the fake clock's float stays exact, so the boundaries
# (age == ttl: expired; now == claim expiry: released; now == due: visible)
# are hit exactly and checked exactly.
MESSAGE_TTLS = st.sampled_from([60, 61, 120, 300, 3600])
DELAYS = st.sampled_from([0, 0, 0, 30, 90])
CLAIM_TTLS = st.sampled_from([60, 90, 300])
GRACES = st.sampled_from([60, 120])
ADVANCES = st.sampled_from([1, 29, 30, 59, 60, 61, 90, 120, 300, 421])


@dataclass
class ModelMessage:
    id: str
    client: str
    created: float
    expires: float
    due: float
    body: Any
    claim_id: str | None = None
    claim_count: int = 0


@dataclass
class ModelClaim:
    id: str
    expires: float
    message_ids: list[str] = field(default_factory=list)


class Model:
    """What the storage interface promises, for one queue."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        # Insertion order is FIFO order.
        self.messages: dict[str, ModelMessage] = {}
        self.claims: dict[str, ModelClaim] = {}

    @property
    def now(self) -> float:
        return self.clock()

    def alive(self, m: ModelMessage) -> bool:
        return self.now < m.expires

    def active_claim(self, m: ModelMessage) -> str | None:
        """The id of the message's claim while that claim lasts."""
        if m.claim_id is None:
            return None
        claim = self.claims.get(m.claim_id)
        if claim is None or self.now >= claim.expires:
            return None
        return m.claim_id

    def live(self) -> list[ModelMessage]:
        return [m for m in self.messages.values() if self.alive(m)]

    def claimable(self) -> list[ModelMessage]:
        return [m for m in self.live() if self.active_claim(m) is None and self.now >= m.due]

    def listing(self, client: str, echo: bool, include_claimed: bool,
                include_delayed: bool) -> list[ModelMessage]:
        return [
            m for m in self.live()
            if (echo or m.client != client)
            and (include_claimed or self.active_claim(m) is None)
            and (include_delayed or self.now >= m.due)
        ]

    def claim_is_live(self, claim_id: str) -> bool:
        claim = self.claims.get(claim_id)
        return claim is not None and self.now < claim.expires


class StorageMachine(RuleBasedStateMachine):
    """Set per test: the driver, the loop it lives on, and the clock."""

    driver: DataDriver
    loop: asyncio.AbstractEventLoop
    clock: FakeClock

    def __init__(self) -> None:
        super().__init__()
        self.project = f"model-{uuid.uuid4().hex[:12]}"
        self.model = Model(self.clock)
        self.posted: list[str] = []
        self.claim_ids: list[str] = []
        self.serial = 0

    # --- plumbing ----------------------------------------------------------

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def list_all(self, client: str, *, echo: bool, include_claimed: bool,
                 include_delayed: bool, limit: int = 7) -> list[Any]:
        """Every page of a listing, following the markers."""
        seen: list[Any] = []
        marker = None
        for _ in range(1000):
            page, marker = self.run(self.driver.messages.list(
                self.project, QUEUE, marker=marker, limit=limit, client_id=client, echo=echo,
                include_claimed=include_claimed, include_delayed=include_delayed))
            if not page:
                return seen
            assert len(page) <= limit
            seen += page
        raise AssertionError("paging never ended")

    @initialize()
    def create_queue(self) -> None:
        assert self.run(self.driver.queues.create(self.project, QUEUE, {})) is True

    # --- rules -------------------------------------------------------------

    @rule(n=st.integers(1, 3), ttl=MESSAGE_TTLS, delay=DELAYS,
          client=st.sampled_from(CLIENTS))
    def post(self, n: int, ttl: int, delay: int, client: str) -> None:
        bodies = []
        for _ in range(n):
            self.serial += 1
            bodies.append({"n": self.serial})
        ids = self.run(self.driver.messages.post(
            self.project, QUEUE, [NewMessage(body=b, ttl=ttl, delay=delay) for b in bodies],
            client))
        assert len(ids) == n and len(set(ids)) == n
        assert not set(ids) & set(self.model.messages), "an id was issued twice"
        now = self.model.now
        for message_id, body in zip(ids, bodies):
            self.model.messages[message_id] = ModelMessage(
                id=message_id, client=client, created=now, expires=now + ttl, due=now + delay,
                body=body)
        self.posted += ids

    @rule(client=st.sampled_from(CLIENTS), echo=st.booleans(),
          include_claimed=st.booleans(), include_delayed=st.booleans(),
          limit=st.integers(1, 20))
    def list_messages(self, client: str, echo: bool, include_claimed: bool,
                      include_delayed: bool, limit: int) -> None:
        got = self.list_all(client, echo=echo, include_claimed=include_claimed,
                            include_delayed=include_delayed, limit=limit)
        want = self.model.listing(client, echo, include_claimed, include_delayed)
        assert [m.id for m in got] == [m.id for m in want]
        for message, expected in zip(got, want):
            assert message.body == expected.body
            assert message.claim_id == self.model.active_claim(expected)
            assert message.claim_count == expected.claim_count

    @rule(limit=st.integers(1, 5), ttl=CLAIM_TTLS, grace=GRACES)
    def claim(self, limit: int, ttl: int, grace: int) -> None:
        result = self.run(self.driver.claims.create(
            self.project, QUEUE, ttl=ttl, grace=grace, limit=limit, dead_letter=None))
        claim_id, claimed = result.claim_id, result.messages
        want = self.model.claimable()[:limit]
        assert [m.id for m in claimed] == [m.id for m in want]
        if not want:
            assert claim_id is None
            return
        assert claim_id is not None and claim_id not in self.model.claims
        now = self.model.now
        self.model.claims[claim_id] = ModelClaim(claim_id, now + ttl, [m.id for m in want])
        for message, m in zip(claimed, want):
            m.claim_id = claim_id
            m.claim_count += 1
            m.expires = max(m.expires, now + ttl + grace)
            assert message.claim_id == claim_id
            assert message.claim_count == m.claim_count
            assert message.body == m.body
        self.claim_ids.append(claim_id)

    @precondition(lambda self: self.claim_ids)
    @rule(data=st.data())
    def get_claim(self, data: st.DataObject) -> None:
        claim_id = data.draw(st.sampled_from(self.claim_ids))
        if not self.model.claim_is_live(claim_id):
            try:
                self.run(self.driver.claims.get(self.project, QUEUE, claim_id))
            except errors.ClaimNotFound:
                return
            raise AssertionError("an expired or released claim was returned")
        got = self.run(self.driver.claims.get(self.project, QUEUE, claim_id))
        want = [m for m in self.model.live() if self.model.active_claim(m) == claim_id]
        assert got.id == claim_id
        assert [m.id for m in got.messages] == [m.id for m in want]

    @precondition(lambda self: self.claim_ids)
    @rule(data=st.data(), ttl=CLAIM_TTLS, grace=GRACES)
    def renew_claim(self, data: st.DataObject, ttl: int, grace: int) -> None:
        claim_id = data.draw(st.sampled_from(self.claim_ids))
        live = self.model.claim_is_live(claim_id)
        try:
            self.run(self.driver.claims.update(self.project, QUEUE, claim_id, ttl=ttl,
                                               grace=grace))
        except errors.ClaimNotFound:
            assert not live, "a live claim could not be renewed"
            return
        assert live, "an expired or released claim was renewed"
        now = self.model.now
        self.model.claims[claim_id].expires = now + ttl
        for m in self.model.live():
            if m.claim_id == claim_id:
                m.expires = max(m.expires, now + ttl + grace)

    @precondition(lambda self: self.claim_ids)
    @rule(data=st.data())
    def release_claim(self, data: st.DataObject) -> None:
        claim_id = data.draw(st.sampled_from(self.claim_ids))
        self.run(self.driver.claims.delete(self.project, QUEUE, claim_id))
        self.model.claims.pop(claim_id, None)
        for m in self.model.messages.values():
            if m.claim_id == claim_id:
                m.claim_id = None

    @precondition(lambda self: self.posted)
    @rule(data=st.data(), with_claim=st.sampled_from(["none", "own", "other"]))
    def delete(self, data: st.DataObject, with_claim: str) -> None:
        message_id = data.draw(st.sampled_from(self.posted))
        m = self.model.messages.get(message_id)
        alive = m is not None and self.model.alive(m)
        active = self.model.active_claim(m) if alive and m is not None else None
        if with_claim == "own":
            claim_id = active or (m.claim_id if m is not None else None) or "no-such-claim"
        elif with_claim == "other":
            others = [c for c in self.claim_ids if c != active]
            claim_id = data.draw(st.sampled_from(others)) if others else "no-such-claim"
        else:
            claim_id = None
        call = self.driver.messages.delete(self.project, QUEUE, message_id, claim_id)
        if not alive:
            # Gone (deleted, popped or expired): idempotent, whatever the claim id.
            try:
                self.run(call)
            except errors.ClaimNotValid:
                pass
            return
        assert m is not None
        if claim_id is None and active is not None:
            expected: type[Exception] | None = errors.MessageIsClaimed
        elif claim_id is not None and active is None:
            expected = errors.MessageNotClaimed
        elif claim_id is not None and claim_id != active:
            expected = errors.ClaimDoesNotExist
        else:
            expected = None
        if expected is None:
            self.run(call)
            del self.model.messages[message_id]
            return
        try:
            self.run(call)
        except expected:
            return
        raise AssertionError(f"delete({claim_id=}) of a message claimed by {active} "
                             f"should raise {expected.__name__}")

    @rule(limit=st.integers(1, 5))
    def pop(self, limit: int) -> None:
        popped = self.run(self.driver.messages.pop(self.project, QUEUE, limit))
        want = self.model.claimable()[:limit]
        assert [m.id for m in popped] == [m.id for m in want]
        for message, m in zip(popped, want):
            assert message.body == m.body
            del self.model.messages[m.id]

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(self.posted))
        m = self.model.messages.get(message_id)
        if m is None or not self.model.alive(m):
            try:
                self.run(self.driver.messages.get(self.project, QUEUE, message_id))
            except errors.MessageDoesNotExist:
                return
            raise AssertionError("a deleted or expired message was returned")
        message = self.run(self.driver.messages.get(self.project, QUEUE, message_id))
        assert (message.id, message.body) == (m.id, m.body)
        assert message.claim_id == self.model.active_claim(m)
        assert message.claim_count == m.claim_count
        assert message.age == int(self.model.now - m.created)

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def bulk_get(self, data: st.DataObject) -> None:
        wanted = data.draw(st.lists(st.sampled_from(self.posted), max_size=5, unique=True))
        found = self.run(self.driver.messages.bulk_get(self.project, QUEUE, wanted))
        live = {m.id for m in self.model.live()}
        assert {m.id for m in found} == set(wanted) & live

    @rule(seconds=ADVANCES)
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # --- invariants --------------------------------------------------------

    @invariant()
    def everything_live_is_listed_in_fifo_order(self) -> None:
        got = self.list_all(CLIENT, echo=True, include_claimed=True, include_delayed=True,
                            limit=20)
        want = self.model.live()
        assert [m.id for m in got] == [m.id for m in want]
        for message, m in zip(got, want):
            assert message.claim_id == self.model.active_claim(m)

    @invariant()
    def default_listing_shows_the_visible_messages(self) -> None:
        got = self.list_all(OTHER_CLIENT, echo=False, include_claimed=False,
                            include_delayed=False, limit=20)
        want = self.model.listing(OTHER_CLIENT, False, False, False)
        assert [m.id for m in got] == [m.id for m in want]

    @invariant()
    def stats_match(self) -> None:
        stats = self.run(self.driver.queues.stats(self.project, QUEUE))
        live = self.model.live()
        claimed = [m for m in live if self.model.active_claim(m) is not None]
        assert (stats.claimed, stats.free) == (len(claimed), len(live) - len(claimed))
        if live:
            assert stats.oldest is not None and stats.newest is not None
            assert (stats.oldest.id, stats.newest.id) == (live[0].id, live[-1].id)
        else:
            assert stats.oldest is None and stats.newest is None


async def test_driver_matches_the_model(driver: DataDriver, clock: FakeClock) -> None:
    loop = asyncio.get_running_loop()
    machine = type("Machine", (StorageMachine,),
                   {"driver": driver, "loop": loop, "clock": clock})
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=SETTINGS)
