"""Public ids tell a tenant nothing about other tenants' traffic.

SQLite and PostgreSQL number rows with one counter per table for the whole
server; shown as it is, the counter let project A count project B's posts
between two of its own. Here A posts, B posts (or not), A posts again, many
times over: the numeric gap between A's two ids must not tell the two cases
apart. With a plain counter the gaps are 1 without B and 6 with B's five
posts, two groups that never overlap; with opaque ids they are random in
both cases (or, for Redis's per-queue sequences, the same in both).
Markers still page A's queue in the order A posted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.storage.helpers import all_ids, post
from tidings.storage.base import DataDriver, NewSubscription
from tidings.storage.common.ids import IdCodec

TRIALS = 12
B_POSTS = 5


def as_number(public_id: str) -> int:
    """The id read the way a curious client would: as one big number."""
    try:
        return int(public_id, 16)
    except ValueError:
        return int.from_bytes(public_id.encode(), "big")


def separable(quiet: list[int], busy: list[int]) -> bool:
    """Whether one group of gaps lies wholly below the other: a client
    could then tell from a gap alone whether B was busy."""
    return max(quiet) < min(busy) or max(busy) < min(quiet)


async def gaps(make_a: Callable[[int], Awaitable[str]], make_b: Callable[[int], Awaitable[None]],
               busy: bool) -> list[int]:
    found = []
    for trial in range(TRIALS):
        first = await make_a(trial)
        if busy:
            await make_b(trial)
        second = await make_a(trial)
        found.append(as_number(second) - as_number(first))
    return found


async def test_message_ids_do_not_reveal_another_projects_posts(driver: DataDriver,
                                                                project: str) -> None:
    other = project + "-b"

    async def a_posts(trial: int) -> str:
        return (await post(driver, project, "mine"))[0]

    async def b_posts(trial: int) -> None:
        for _ in range(B_POSTS):
            await post(driver, other, "theirs")

    quiet = await gaps(a_posts, b_posts, busy=False)
    busy = await gaps(a_posts, b_posts, busy=True)
    assert not separable(quiet, busy), (quiet, busy)


async def test_message_ids_do_not_reveal_a_batch_of_another_project(driver: DataDriver,
                                                                    project: str) -> None:
    """One batch of B between A's posts: same rule (a batch takes a run of
    counter values at once)."""
    other = project + "-b"

    async def a_posts(trial: int) -> str:
        return (await post(driver, project, "mine"))[0]

    async def b_posts(trial: int) -> None:
        await post(driver, other, "theirs", B_POSTS)

    quiet = await gaps(a_posts, b_posts, busy=False)
    busy = await gaps(a_posts, b_posts, busy=True)
    assert not separable(quiet, busy), (quiet, busy)


async def test_subscription_ids_do_not_reveal_another_projects_subscriptions(
        driver: DataDriver, project: str) -> None:
    other = project + "-b"
    made = {"a": 0, "b": 0}

    async def subscribe(who: str, owner: str) -> str:
        made[who] += 1
        created = await driver.subscriptions.create(
            owner, "q", NewSubscription(subscriber=f"http://127.0.0.1/{who}/{made[who]}",
                                        ttl=3600, options={}))
        assert created is not None
        return created

    async def a_subscribes(trial: int) -> str:
        return await subscribe("a", project)

    async def b_subscribes(trial: int) -> None:
        for _ in range(B_POSTS):
            await subscribe("b", other)

    quiet = await gaps(a_subscribes, b_subscribes, busy=False)
    busy = await gaps(a_subscribes, b_subscribes, busy=True)
    assert not separable(quiet, busy), (quiet, busy)


async def test_markers_page_in_posting_order_across_other_projects_posts(
        driver: DataDriver, project: str) -> None:
    other = project + "-b"
    mine = []
    for _ in range(7):
        mine += await post(driver, project, "q")
        await post(driver, other, "q", 3)
    assert await all_ids(driver, project, "q", limit=2) == mine


def test_a_batch_names_each_message_as_a_post_of_one_would() -> None:
    """message_ids takes a short cut for one id and cuts one cipher output
    for a batch: both must give what message_id gives, and parse back."""
    codec = IdCodec(bytes(range(16)), {})
    for counters in (range(7, 8), range(1000, 1003), range(2**40, 2**40 + 10)):
        ids = codec.message_ids(counters)
        assert ids == [codec.message_id(counter) for counter in counters]
        assert all(len(public) == 32 for public in ids)
        assert codec.parse_message_ids(ids) == list(counters)
