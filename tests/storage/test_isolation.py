"""Projects and queues never see each other's data."""

from __future__ import annotations

import pytest

from tests.storage.helpers import claim, list_ids, post
from tidings import errors
from tidings.storage.base import QueueFilters


@pytest.fixture
def other(project: str) -> str:
    return project + "-other"


# --- projects -----------------------------------------------------------------


async def test_same_queue_name_in_two_projects_is_two_queues(driver, project, other):
    assert await driver.queues.create(project, "q", {"owner": "a"}) is True
    assert await driver.queues.create(other, "q", {"owner": "b"}) is True
    assert await driver.queues.get_metadata(project, "q") == {"owner": "a"}
    assert await driver.queues.get_metadata(other, "q") == {"owner": "b"}


async def test_queue_of_another_project_does_not_exist(driver, project, other):
    await driver.queues.create(project, "q", {})
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.get_metadata(other, "q")
    with pytest.raises(errors.QueueDoesNotExist):
        await driver.queues.set_metadata(other, "q", {"x": 1})
    assert await driver.queues.get_metadata(project, "q") == {}


async def test_queue_listing_and_count_are_per_project(driver, project, other):
    await driver.queues.create(project, "a", {"env": "prod"})
    await driver.queues.create(project, "b", {"env": "prod"})
    await driver.queues.create(other, "c", {"env": "prod"})
    mine = await driver.queues.list(project, marker=None, limit=10, detailed=False)
    theirs = await driver.queues.list(other, marker=None, limit=10, detailed=False)
    assert [r.name for r in mine] == ["a", "b"]
    assert [r.name for r in theirs] == ["c"]
    assert await driver.queues.count(project) == 2
    assert await driver.queues.count(other) == 1
    prod = QueueFilters(metadata=(("env", "prod"),))
    assert await driver.queues.count(other, prod) == 1


async def test_project_names_are_not_prefixes_of_each_other(driver, project):
    # "p" and "p-other" and "p-" must not match each other in any lookup.
    await post(driver, project, "q", 2)
    for stranger in (project + "-", project[:-1], project.upper(), ""):
        assert await list_ids(driver, stranger, "q") == []
        assert await driver.queues.count(stranger) == 0


async def test_delete_of_queue_leaves_other_project_alone(driver, project, other):
    await post(driver, project, "q", 2)
    kept = await post(driver, other, "q", 2)
    await driver.queues.delete(project, "q")
    assert await list_ids(driver, other, "q") == kept


async def test_purge_leaves_other_project_alone(driver, project, other):
    await post(driver, project, "q", 2)
    kept = await post(driver, other, "q", 2)
    await driver.queues.purge_messages(project, "q")
    assert await list_ids(driver, other, "q") == kept


async def test_messages_are_not_visible_across_projects(driver, project, other):
    mine = await post(driver, project, "q", 2)
    theirs = await post(driver, other, "q", 3)
    assert await list_ids(driver, project, "q") == mine
    assert await list_ids(driver, other, "q") == theirs
    assert (await driver.queues.stats(project, "q")).total == 2
    assert (await driver.queues.stats(other, "q")).total == 3


async def test_message_id_of_another_project_is_not_found(driver, project, other):
    [message_id] = await post(driver, project, "q")
    await post(driver, other, "q")
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(other, "q", message_id)
    assert await driver.messages.bulk_get(other, "q", [message_id]) == []


async def test_delete_by_id_of_another_project_is_a_no_op(driver, project, other):
    posted = await post(driver, project, "q", 2)
    await post(driver, other, "q")
    await driver.messages.delete(other, "q", posted[0], None)
    await driver.messages.bulk_delete(other, "q", posted, None)
    assert await list_ids(driver, project, "q") == posted


async def test_claims_and_pops_stay_in_their_project(driver, project, other):
    mine = await post(driver, project, "q", 2)
    theirs = await post(driver, other, "q", 2)
    _, claimed = await claim(driver, other, "q", limit=10)
    assert [m.id for m in claimed] == theirs
    assert [m.id for m in await driver.messages.pop(project, "q", 10)] == mine
    assert await driver.messages.pop(other, "q", 10) == []


async def test_claim_of_another_project_cannot_be_used(driver, project, other):
    [message_id] = await post(driver, project, "q")
    await post(driver, other, "q")
    claim_id, _ = await claim(driver, project, "q")
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.update(other, "q", claim_id, ttl=600, grace=60)
    await driver.claims.delete(other, "q", claim_id)
    with pytest.raises(errors.MessageIsClaimed):
        await driver.messages.delete(project, "q", message_id, None)


# --- queues within a project ------------------------------------------------


async def test_messages_are_not_visible_across_queues(driver, project):
    a = await post(driver, project, "a", 2)
    b = await post(driver, project, "b", 3)
    assert await list_ids(driver, project, "a") == a
    assert await list_ids(driver, project, "b") == b
    assert (await driver.queues.stats(project, "a")).total == 2


async def test_message_id_of_another_queue_is_not_found(driver, project):
    [message_id] = await post(driver, project, "a")
    await post(driver, project, "b")
    with pytest.raises(errors.MessageDoesNotExist):
        await driver.messages.get(project, "b", message_id)
    assert await driver.messages.bulk_get(project, "b", [message_id]) == []


async def test_delete_by_id_of_another_queue_is_a_no_op(driver, project):
    posted = await post(driver, project, "a", 2)
    await post(driver, project, "b")
    await driver.messages.delete(project, "b", posted[0], None)
    await driver.messages.bulk_delete(project, "b", posted, None)
    assert await list_ids(driver, project, "a") == posted


async def test_marker_from_another_queue_does_not_leak(driver, project):
    await post(driver, project, "a", 3)
    b = await post(driver, project, "b", 3)
    page, _ = await driver.messages.list(
        project, "a", marker=None, limit=10, client_id=None, echo=True,
        include_claimed=False, include_delayed=False,
    )
    for message in page:
        for listed in await list_ids(driver, project, "b", marker=message.id):
            assert listed in b


async def test_claims_stay_in_their_queue(driver, project):
    a = await post(driver, project, "a", 2)
    b = await post(driver, project, "b", 2)
    claim_id, claimed = await claim(driver, project, "a")
    assert [m.id for m in claimed] == a
    assert await list_ids(driver, project, "b") == b
    assert [m.id for m in (await claim(driver, project, "b"))[1]] == b
    with pytest.raises(errors.ClaimNotFound):
        await driver.claims.get(project, "b", claim_id)


async def test_delete_of_one_queue_leaves_others_alone(driver, project):
    await post(driver, project, "a", 2)
    b = await post(driver, project, "b", 2)
    claim_id, _ = await claim(driver, project, "b", limit=1)
    await driver.queues.delete(project, "a")
    assert await list_ids(driver, project, "b", include_claimed=True) == b
    assert [m.id for m in (await driver.claims.get(project, "b", claim_id)).messages] == b[:1]


async def test_purge_of_one_queue_leaves_others_alone(driver, project):
    await post(driver, project, "a", 2)
    b = await post(driver, project, "b", 2)
    claim_id, _ = await claim(driver, project, "b", limit=1)
    await driver.queues.purge_messages(project, "a")
    assert await list_ids(driver, project, "b", include_claimed=True) == b
    assert (await driver.claims.get(project, "b", claim_id)).ttl == 300


async def test_queue_names_that_look_alike_are_distinct(driver, project):
    a = await post(driver, project, "q", 1)
    b = await post(driver, project, "Q", 1)
    c = await post(driver, project, "q_", 1)
    d = await post(driver, project, "q%", 1)
    assert await list_ids(driver, project, "q") == a
    assert await list_ids(driver, project, "Q") == b
    assert await list_ids(driver, project, "q_") == c
    assert await list_ids(driver, project, "q%") == d
