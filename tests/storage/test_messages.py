"""Messages: post, list, get, bulk get, delete, bulk delete, pop."""

from __future__ import annotations

import pytest

from tests.storage.helpers import (
    CLIENT,
    GARBAGE_IDS,
    OTHER_CLIENT,
    all_ids,
    claim,
    ids,
    list_ids,
    list_messages,
    post,
)
from tidings import errors
from tidings.storage.base import NewMessage

# --- post -------------------------------------------------------------------


async def test_post_returns_one_distinct_id_per_message_in_order(driver, project):
    posted = await driver.messages.post(
        project, "q", [NewMessage(body=i, ttl=3600) for i in range(5)], CLIENT
    )
    assert len(posted) == 5 and len(set(posted)) == 5
    assert all(isinstance(i, str) and i for i in posted)
    page, _ = await list_messages(driver, project, "q")
    assert [(m.id, m.body) for m in page] == list(zip(posted, range(5)))


async def test_post_creates_the_queue(driver, project):
    await post(driver, project, "lazy")
    assert await driver.queues.get_metadata(project, "lazy") == {}
    assert await driver.queues.create(project, "lazy", {"a": 1}) is False


async def test_post_to_existing_queue_keeps_its_metadata(driver, project):
    await driver.queues.create(project, "q", {"a": 1})
    await post(driver, project, "q")
    assert await driver.queues.get_metadata(project, "q") == {"a": 1}


async def test_ids_of_later_posts_follow_earlier_ones(driver, project):
    first = await post(driver, project, "q", 3)
    second = await post(driver, project, "q", 3)
    assert await list_ids(driver, project, "q") == first + second


async def test_posted_message_has_ttl_age_and_no_claim(driver, project, clock):
    [message_id] = await post(driver, project, "q", ttl=120)
    clock.advance(7)
    message = await driver.messages.get(project, "q", message_id)
    assert message.ttl == 120
    assert message.age == 7
    assert message.claim_id is None
    assert message.claim_count == 0


@pytest.mark.parametrize(
    "body",
    [
        {"event": "created", "id": 7},
        [1, "two", 3.5, None, True],
        "just a string",
        "",
        42,
        -3.25,
        0,
        True,
        False,
        None,
        {},
        [],
        "unicode \u00e9\u4e2d\u6587 \U0001f600 \u2028 end",
        "nul \u0000 inside",
        {"deep": {"er": [{"est": [[], {}, [None, {"k": "v"}]]}]}, "\u00fc\u00f1\u00ee": "\u2603"},
        {"big": 2**53, "neg": -(2**31), "float": 1e-7},
    ],
    ids=lambda body: type(body).__name__,
)
async def test_body_round_trips(driver, project, body):
    [message_id] = await post(driver, project, "q", body=body)
    assert (await driver.messages.get(project, "q", message_id)).body == body
    page, _ = await list_messages(driver, project, "q")
    assert page[0].body == body
    _, claimed = await claim(driver, project, "q")
    assert claimed[0].body == body


# --- list -------------------------------------------------------------------


async def test_list_is_fifo(driver, project):
    posted = []
    for i in range(6):
        posted += await post(driver, project, "q", body=i)
    page, _ = await list_messages(driver, project, "q")
    assert [m.id for m in page] == posted
    assert [m.body for m in page] == list(range(6))


async def test_list_of_missing_queue_is_empty(driver, project):
    page, _ = await list_messages(driver, project, "missing")
    assert page == []


async def test_list_respects_limit(driver, project):
    posted = await post(driver, project, "q", 5)
    assert await list_ids(driver, project, "q", limit=2) == posted[:2]


async def test_list_after_marker(driver, project):
    posted = await post(driver, project, "q", 5)
    page, marker = await list_messages(driver, project, "q", limit=2)
    assert ids(page) == posted[:2]
    assert marker is not None
    assert await list_ids(driver, project, "q", marker=marker, limit=2) == posted[2:4]


async def test_marker_paging_sees_every_message_exactly_once(driver, project):
    posted = await post(driver, project, "q", 47)
    assert await all_ids(driver, project, "q", limit=5) == posted


async def test_marker_paging_with_deletes_between_pages(driver, project):
    posted = await post(driver, project, "q", 10)
    page, marker = await list_messages(driver, project, "q", limit=3)
    assert ids(page) == posted[:3]
    await driver.messages.delete(project, "q", posted[3], None)
    await driver.messages.delete(project, "q", posted[2], None)
    rest = []
    while True:
        page, marker = await list_messages(driver, project, "q", marker=marker, limit=3)
        if not page:
            break
        rest += ids(page)
    assert rest == posted[4:]


async def test_marker_paging_sees_messages_posted_after_it(driver, project):
    posted = await post(driver, project, "q", 3)
    page, marker = await list_messages(driver, project, "q", limit=10)
    assert ids(page) == posted
    later = await post(driver, project, "q", 2)
    assert await list_ids(driver, project, "q", marker=marker) == later


async def test_list_with_garbage_marker_does_not_raise(driver, project):
    await post(driver, project, "q", 3)
    for marker in GARBAGE_IDS:
        page, _ = await list_messages(driver, project, "q", marker=marker or None)
        assert isinstance(page, list)


async def test_echo_false_hides_own_messages(driver, project):
    await post(driver, project, "q", 2, client_id=CLIENT)
    others = await post(driver, project, "q", 1, client_id=OTHER_CLIENT)
    assert await list_ids(driver, project, "q", client_id=CLIENT, echo=False) == others


async def test_echo_false_reaches_past_many_own_messages(driver, project):
    others = await post(driver, project, "q", 1, client_id=OTHER_CLIENT)
    await post(driver, project, "q", 300, client_id=CLIENT)
    others += await post(driver, project, "q", 2, client_id=OTHER_CLIENT)
    assert await list_ids(driver, project, "q", client_id=CLIENT, echo=False, limit=2) == others[:2]
    assert await all_ids(driver, project, "q", client_id=CLIENT, echo=False, limit=2) == others


async def test_echo_true_shows_own_messages(driver, project):
    posted = await post(driver, project, "q", 2, client_id=CLIENT)
    assert await list_ids(driver, project, "q", client_id=CLIENT, echo=True) == posted


async def test_other_client_sees_messages_without_echo(driver, project):
    posted = await post(driver, project, "q", 2, client_id=CLIENT)
    assert await list_ids(driver, project, "q", client_id=OTHER_CLIENT, echo=False) == posted


async def test_list_hides_claimed_messages_by_default(driver, project):
    posted = await post(driver, project, "q", 4)
    await claim(driver, project, "q", limit=2)
    assert await list_ids(driver, project, "q") == posted[2:]


async def test_include_claimed_shows_claimed_messages_with_their_claim(driver, project):
    posted = await post(driver, project, "q", 4)
    claim_id, _ = await claim(driver, project, "q", limit=2)
    page, _ = await list_messages(driver, project, "q", include_claimed=True)
    assert ids(page) == posted
    assert [m.claim_id for m in page] == [claim_id, claim_id, None, None]
    assert [m.claim_count for m in page] == [1, 1, 0, 0]


async def test_delayed_messages_are_hidden_until_due(driver, project, clock):
    now_ids = await post(driver, project, "q", 1)
    later_ids = await post(driver, project, "q", 1, delay=30)
    assert await list_ids(driver, project, "q") == now_ids
    clock.advance(29)
    assert await list_ids(driver, project, "q") == now_ids
    clock.advance(1)
    assert await list_ids(driver, project, "q") == now_ids + later_ids


async def test_include_delayed_shows_delayed_messages(driver, project):
    posted = await post(driver, project, "q", 2, delay=60)
    assert await list_ids(driver, project, "q") == []
    assert await list_ids(driver, project, "q", include_delayed=True) == posted


async def test_delayed_messages_are_not_claimable_until_due(driver, project, clock):
    posted = await post(driver, project, "q", 2, delay=60)
    assert await claim(driver, project, "q") == (None, [])
    clock.advance(60)
    _, claimed = await claim(driver, project, "q")
    assert ids(claimed) == posted


async def test_delayed_messages_are_not_popped_until_due(driver, project, clock):
    posted = await post(driver, project, "q", 2, delay=60)
    assert await driver.messages.pop(project, "q", 10) == []
    clock.advance(60)
    assert ids(await driver.messages.pop(project, "q", 10)) == posted


async def test_delayed_message_can_be_read_by_id(driver, project):
    [message_id] = await post(driver, project, "q", delay=60, body="later")
    assert (await driver.messages.get(project, "q", message_id)).body == "later"


# --- get and bulk get -------------------------------------------------------


async def test_get_returns_the_message(driver, project):
    posted = await post(driver, project, "q", 3)
    message = await driver.messages.get(project, "q", posted[1])
    assert message.id == posted[1]
    assert message.body == {"n": 1}


async def test_get_unknown_id_raises(driver, project):
    posted = await post(driver, project, "q")
    await driver.messages.delete(project, "q", posted[0], None)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", posted[0])


@pytest.mark.parametrize("garbage", GARBAGE_IDS)
async def test_get_garbage_id_raises_not_found(driver, project, garbage):
    await post(driver, project, "q", 3)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", garbage)


async def test_get_from_missing_queue_raises(driver, project):
    [message_id] = await post(driver, project, "q")
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "missing", message_id)


async def test_get_shows_claim(driver, project):
    [message_id] = await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q")
    message = await driver.messages.get(project, "q", message_id)
    assert message.claim_id == claim_id
    assert message.claim_count == 1


async def test_bulk_get_returns_the_messages(driver, project):
    posted = await post(driver, project, "q", 4)
    found = await driver.messages.bulk_get(project, "q", [posted[0], posted[2]])
    assert sorted(ids(found)) == sorted([posted[0], posted[2]])
    assert {m.id: m.body for m in found} == {posted[0]: {"n": 0}, posted[2]: {"n": 2}}


async def test_bulk_get_skips_unknown_and_garbage_ids(driver, project):
    posted = await post(driver, project, "q", 2)
    deleted = await post(driver, project, "q")
    await driver.messages.delete(project, "q", deleted[0], None)
    found = await driver.messages.bulk_get(project, "q", [*GARBAGE_IDS, posted[1], *deleted])
    assert ids(found) == [posted[1]]


async def test_bulk_get_of_nothing_found_is_empty(driver, project):
    await post(driver, project, "q", 2)
    assert await driver.messages.bulk_get(project, "q", []) == []
    assert await driver.messages.bulk_get(project, "q", GARBAGE_IDS) == []
    assert await driver.messages.bulk_get(project, "missing", GARBAGE_IDS) == []


async def test_bulk_get_with_repeated_id_returns_it_once(driver, project):
    posted = await post(driver, project, "q", 2)
    found = await driver.messages.bulk_get(project, "q", [posted[0], posted[0]])
    assert ids(found) == [posted[0]]


# --- delete -----------------------------------------------------------------


async def test_delete_removes_the_message(driver, project):
    posted = await post(driver, project, "q", 3)
    await driver.messages.delete(project, "q", posted[1], None)
    assert await list_ids(driver, project, "q") == [posted[0], posted[2]]
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", posted[1])
    assert (await driver.queues.stats(project, "q")).total == 2


async def test_delete_is_idempotent(driver, project):
    posted = await post(driver, project, "q", 2)
    await driver.messages.delete(project, "q", posted[0], None)
    await driver.messages.delete(project, "q", posted[0], None)
    assert await list_ids(driver, project, "q") == [posted[1]]


@pytest.mark.parametrize("garbage", GARBAGE_IDS)
async def test_delete_of_garbage_id_is_a_no_op(driver, project, garbage):
    posted = await post(driver, project, "q", 2)
    await driver.messages.delete(project, "q", garbage, None)
    assert await list_ids(driver, project, "q") == posted


async def test_delete_in_missing_queue_is_a_no_op(driver, project):
    [message_id] = await post(driver, project, "q")
    await driver.messages.delete(project, "missing", message_id, None)
    assert await list_ids(driver, project, "q") == [message_id]


async def test_delete_of_claimed_message_without_claim_id_raises(driver, project):
    [message_id] = await post(driver, project, "q")
    await claim(driver, project, "q")
    with pytest.raises(errors.MessageIsClaimed):
        await driver.messages.delete(project, "q", message_id, None)
    assert (await driver.messages.get(project, "q", message_id)).id == message_id


async def test_delete_of_claimed_message_with_wrong_claim_id_raises(driver, project):
    [message_id, other_id] = await post(driver, project, "q", 2)
    await claim(driver, project, "q", limit=1)
    other_claim, _ = await claim(driver, project, "q", limit=1)
    for wrong in ["not-a-claim", other_claim]:
        with pytest.raises(errors.ClaimDoesNotExist):
            await driver.messages.delete(project, "q", message_id, wrong)
    assert (await driver.messages.get(project, "q", message_id)).id == message_id


async def test_delete_with_claim_id_of_unclaimed_message_raises(driver, project):
    [message_id] = await post(driver, project, "q")
    with pytest.raises(errors.MessageNotClaimed):
        await driver.messages.delete(project, "q", message_id, "some-claim")
    assert (await driver.messages.get(project, "q", message_id)).id == message_id


async def test_delete_with_claim_id_after_release_raises_not_claimed(driver, project):
    [message_id] = await post(driver, project, "q")
    claim_id, _ = await claim(driver, project, "q")
    await driver.claims.delete(project, "q", claim_id)
    with pytest.raises(errors.MessageNotClaimed):
        await driver.messages.delete(project, "q", message_id, claim_id)


async def test_delete_of_claimed_message_with_its_claim_id(driver, project):
    [message_id, other_id] = await post(driver, project, "q", 2)
    claim_id, _ = await claim(driver, project, "q", limit=2)
    await driver.messages.delete(project, "q", message_id, claim_id)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)
    remaining = await driver.claims.get(project, "q", claim_id)
    assert ids(remaining.messages) == [other_id]


async def test_delete_after_claim_expired_needs_no_claim_id(driver, project, clock):
    [message_id] = await post(driver, project, "q")
    await claim(driver, project, "q", ttl=60)
    clock.advance(61)
    await driver.messages.delete(project, "q", message_id, None)
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", message_id)


# --- bulk delete ------------------------------------------------------------


async def test_bulk_delete_removes_the_messages(driver, project):
    posted = await post(driver, project, "q", 4)
    await driver.messages.bulk_delete(project, "q", [posted[0], posted[2]], None)
    assert await list_ids(driver, project, "q") == [posted[1], posted[3]]


async def test_bulk_delete_skips_unknown_and_garbage_ids(driver, project):
    posted = await post(driver, project, "q", 3)
    await driver.messages.bulk_delete(project, "q", [*GARBAGE_IDS, posted[1]], None)
    assert await list_ids(driver, project, "q") == [posted[0], posted[2]]


async def test_bulk_delete_is_all_or_none_with_a_claimed_message(driver, project):
    posted = await post(driver, project, "q", 4)
    await claim(driver, project, "q", limit=1)  # claims posted[0]
    with pytest.raises(errors.MessageIsClaimed):
        await driver.messages.bulk_delete(project, "q", [posted[1], posted[0], posted[2]], None)
    assert await list_ids(driver, project, "q", include_claimed=True) == posted


async def test_bulk_delete_with_wrong_claim_ids_deletes_none(driver, project):
    posted = await post(driver, project, "q", 3)
    await claim(driver, project, "q", limit=1)
    with pytest.raises(errors.MessageIsClaimed):
        await driver.messages.bulk_delete(project, "q", posted, ["not-the-claim"])
    assert await list_ids(driver, project, "q", include_claimed=True) == posted


async def test_bulk_delete_with_claim_ids_deletes_claimed_messages(driver, project):
    posted = await post(driver, project, "q", 5)
    first, _ = await claim(driver, project, "q", limit=1)
    second, _ = await claim(driver, project, "q", limit=1)
    await driver.messages.bulk_delete(project, "q", posted[:3], [first, second])
    assert await list_ids(driver, project, "q", include_claimed=True) == posted[3:]


async def test_bulk_delete_in_missing_queue_is_a_no_op(driver, project):
    posted = await post(driver, project, "q", 2)
    await driver.messages.bulk_delete(project, "missing", posted, None)
    assert await list_ids(driver, project, "q") == posted


# --- pop --------------------------------------------------------------------


async def test_pop_returns_and_removes_oldest(driver, project):
    posted = await post(driver, project, "q", 5)
    popped = await driver.messages.pop(project, "q", 3)
    assert ids(popped) == posted[:3]
    assert [m.body for m in popped] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert await list_ids(driver, project, "q") == posted[3:]
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "q", posted[0])


async def test_pop_skips_claimed_messages(driver, project):
    posted = await post(driver, project, "q", 4)
    await claim(driver, project, "q", limit=2)
    assert ids(await driver.messages.pop(project, "q", 10)) == posted[2:]
    assert await list_ids(driver, project, "q", include_claimed=True) == posted[:2]


async def test_pop_reaches_past_messages_it_cannot_take(driver, project):
    await post(driver, project, "q", 1, delay=60)
    due = await post(driver, project, "q", 4)
    await post(driver, project, "q", 300, delay=60)
    due += await post(driver, project, "q", 3)
    assert ids(await driver.messages.pop(project, "q", 5)) == due[:5]
    assert ids(await driver.messages.pop(project, "q", 5)) == due[5:]


async def test_pop_of_empty_or_missing_queue_is_empty(driver, project):
    assert await driver.messages.pop(project, "missing", 5) == []
    await driver.queues.create(project, "q", {})
    assert await driver.messages.pop(project, "q", 5) == []


async def test_pop_more_than_available(driver, project):
    posted = await post(driver, project, "q", 2)
    assert ids(await driver.messages.pop(project, "q", 20)) == posted
    assert await driver.messages.pop(project, "q", 20) == []
