"""python-zaqarclient (v2, HTTP transport, noauth) against the real server.

The client sends X-Project-Id from ``auth_opts.options.os_project_id`` and a
dashless UUID as Client-ID (``conf["client_uuid"]``, generated when absent).
Every test works in its own project.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from zaqarclient.queues.v2.client import Client
from zaqarclient.queues.v2.message import Message
from zaqarclient.transport import errors as zerrors


def make_client(server_url: str, project: str, client_uuid: str | None = None) -> Client:
    conf: dict = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    if client_uuid is not None:
        conf["client_uuid"] = client_uuid
    return Client(server_url, version=2, conf=conf)


@pytest.fixture
def client(server_url: str, project: str) -> Client:
    return make_client(server_url, project)


@pytest.fixture
def other_client(server_url: str, project: str) -> Callable[[], Client]:
    """Another consumer in the same project (another Client-ID)."""
    return lambda: make_client(server_url, project, uuid.uuid4().hex)


# Message ids no message has: one shaped like a real Zaqar's (a 24-digit
# ObjectId), one shaped like ours, and one of ours past 2**63.
ZAQAR_STYLE_ID = "5c6939a8e4b0a9c1d2e3f4a5"
UNKNOWN_ID = "0000000fffffffff"
OVERFLOW_ID = "ffffffffffffffff"


def ids_of(post_result: dict) -> list[str]:
    return [href.rsplit("/", 1)[1] for href in post_result["resources"]]


def queue_names(client: Client, **params) -> list[str]:
    iterator, _ = client.queues(**params)
    return [q.name for q in iterator.stream()]


def test_queue_create_exists_list_delete(client: Client) -> None:
    assert queue_names(client) == []
    queue = client.queue("jobs", force_create=True)
    assert queue.name == "jobs"
    # Zaqar v2 answers HEAD on a queue with 405, which the client does not
    # map to an error: exists() is True (queues are lazy in v2).
    assert queue.exists() is True
    assert queue_names(client) == ["jobs"]

    # A dozen more queues: the listing iterator pages through `next` links.
    names = sorted(f"q-{i:02d}" for i in range(12))
    for name in names:
        client.queue(name, force_create=True)
    assert queue_names(client, limit=5) == sorted(names + ["jobs"])
    iterator, count = client.queues(with_count=True, limit=3)
    assert count == 13
    assert len(list(iterator)) == 3  # one page when not streaming

    queue.delete()
    assert "jobs" not in queue_names(client)
    for name in names:
        client.queue(name, auto_create=False).delete()
    assert queue_names(client) == []


def test_queue_metadata_get_and_set(client: Client) -> None:
    queue = client.queue("meta", force_create=True)
    metadata = queue.metadata()
    assert metadata["_default_message_ttl"] == 3600
    assert metadata["_max_messages_post_size"] == 262144
    assert metadata["_dead_letter_queue"] is None

    # metadata(new_meta=...) diffs against a GET and sends a JSON-patch
    # (add/replace/remove, including removals of the reserved keys it got).
    updated = queue.metadata(new_meta={"color": "red", "_default_message_ttl": 120})
    assert updated["color"] == "red"
    assert updated["_default_message_ttl"] == 120
    # The change is stored: a fresh client object reads it back...
    fresh = client.queue("meta", auto_create=False)
    assert fresh.metadata()["color"] == "red"
    # ...and applies: a message without ttl gets the queue's default.
    [message_id] = ids_of(fresh.post({"body": "uses the default ttl"}))
    assert fresh.message(message_id).ttl == 120

    # Keys left out are removed; a removed reserved key is back to default.
    updated = queue.metadata(new_meta={"color": "blue", "size": 3}, force_reload=True)
    assert updated["color"] == "blue" and updated["size"] == 3
    assert updated["_default_message_ttl"] == 3600
    reread = client.queue("meta", auto_create=False).metadata()
    assert {k: v for k, v in reread.items() if not k.startswith("_")} == {
        "color": "blue", "size": 3,
    }

    # The detailed listing carries the stored metadata.
    iterator, _ = client.queues(detailed=True)
    [listed] = list(iterator)
    assert listed.name == "meta"
    assert listed.metadata() == {"color": "blue", "size": 3}


def test_post_list_get_and_delete_messages(client: Client, other_client) -> None:
    queue = client.queue("tasks", force_create=True)
    single = queue.post({"body": {"n": 0}, "ttl": 300})
    assert len(single["resources"]) == 1
    assert single["resources"][0].startswith("/v2/queues/tasks/messages/")
    # One post may hold more than 20 messages (the post limit is its size).
    batch = queue.post([{"body": {"n": i}, "ttl": 600} for i in range(1, 25)])
    ids = ids_of(single) + ids_of(batch)
    assert len(ids) == len(set(ids)) == 25

    # Without echo a client does not see its own messages; another does.
    assert list(queue.messages()) == []
    first_page = list(queue.messages(echo=True))
    assert [m.id for m in first_page] == ids[:10]
    everything = list(queue.messages(echo=True, limit=7).stream())
    assert [m.id for m in everything] == ids
    assert [m.body for m in everything] == [{"n": i} for i in range(25)]
    peer_queue = other_client().queue("tasks", auto_create=False)
    assert [m.id for m in peer_queue.messages(limit=20).stream()] == ids

    # Get one.
    message = queue.message(ids[0])
    assert (message.id, message.body, message.ttl) == (ids[0], {"n": 0}, 300)
    assert 0 <= message.age < 60
    assert message.href == f"/v2/queues/tasks/messages/{ids[0]}"
    assert message.claim_id is None

    # Get many: unknown ids are skipped.
    many = list(queue.messages(ids[1], ids[2], UNKNOWN_ID, ZAQAR_STYLE_ID))
    assert sorted(m.id for m in many) == ids[1:3]
    assert sorted(m.body["n"] for m in many) == [1, 2]

    # Delete one.
    message.delete()
    with pytest.raises(zerrors.ResourceNotFound):
        queue.message(ids[0])
    with pytest.raises(zerrors.ResourceNotFound):
        queue.message(ZAQAR_STYLE_ID)

    # Delete many.
    queue.delete_messages(ids[1], ids[2], ids[3])
    with pytest.raises(zerrors.ResourceNotFound):
        list(queue.messages(ids[1], ids[2], ids[3]))
    remaining = [m.id for m in queue.messages(echo=True, limit=20).stream()]
    assert remaining == ids[4:]

    # Pop takes the oldest and removes them.
    popped = list(queue.pop(3))
    assert [m.body["n"] for m in popped] == [4, 5, 6]
    remaining = [m.id for m in queue.messages(echo=True, limit=20).stream()]
    assert remaining == ids[7:]
    assert queue.stats["messages"]["total"] == 18


def test_claims(client: Client, other_client) -> None:
    queue = client.queue("tasks", force_create=True)
    ids = ids_of(queue.post([{"body": {"task": i}, "ttl": 3600} for i in range(8)]))

    claim = queue.claim(ttl=120, grace=60, limit=5)
    assert claim.id
    claimed = list(claim)
    assert [m.id for m in claimed] == ids[:5]
    assert [m.body for m in claimed] == [{"task": i} for i in range(5)]
    assert all(m.claim_id == claim.id for m in claimed)

    # Another consumer gets only what is left.
    second = other_client().queue("tasks", auto_create=False).claim(ttl=120, grace=60, limit=5)
    assert [m.id for m in second] == ids[5:]
    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (8, 0, 8)
    # Nothing left to claim: 204, the client's claim has no id.
    assert queue.claim(ttl=120, grace=60).id is None

    # Claim get.
    fetched = queue.claim(id=claim.id)
    assert fetched.ttl == 120
    assert 0 <= fetched.age < 60
    assert [m.id for m in fetched] == ids[:5]

    # Renew.
    assert claim.update(ttl=300, grace=90) is None
    assert queue.claim(id=claim.id).ttl == 300

    # A claimed message cannot be deleted without its claim...
    bare = Message(queue, ttl=0, age=0, body=None,
                   href=f"/v2/queues/tasks/messages/{ids[0]}")
    with pytest.raises(zerrors.ForbiddenError):
        bare.delete()
    # ...but with it (the href of a claimed message carries the claim id).
    claimed[0].delete()
    with pytest.raises(zerrors.ResourceNotFound):
        queue.message(ids[0])
    assert [m.id for m in queue.claim(id=claim.id)] == ids[1:5]

    # Release: the claim is gone and its messages are claimable again.
    claim.delete()
    with pytest.raises(zerrors.ResourceNotFound):
        queue.claim(id=claim.id).age
    again = list(queue.claim(ttl=60, grace=60, limit=20))
    assert [m.id for m in again] == ids[1:5]
    # Claimed twice now: the stats say so (message reads carry no
    # claim_count, as in Zaqar).
    assert queue.stats["messages"]["oldest"]["claim_count"] == 2


def test_stats_purge_and_delete(client: Client) -> None:
    queue = client.queue("stats", force_create=True)
    assert queue.stats["messages"] == {"claimed": 0, "free": 0, "total": 0}
    ids = ids_of(queue.post([{"body": i, "ttl": 300} for i in range(5)]))
    claim = queue.claim(ttl=120, grace=60, limit=2)
    assert len(list(claim)) == 2

    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (2, 3, 5)
    assert stats["oldest"]["href"] == f"/v2/queues/stats/messages/{ids[0]}"
    assert stats["newest"]["href"] == f"/v2/queues/stats/messages/{ids[-1]}"
    assert (stats["oldest"]["body"], stats["newest"]["claim_id"]) == (0, None)

    queue.purge(resource_types=["messages"])
    assert queue.stats["messages"] == {"claimed": 0, "free": 0, "total": 0}
    assert list(queue.messages(echo=True, include_claimed=True)) == []
    # A purge keeps the queue and its metadata.
    assert queue_names(client) == ["stats"]

    queue.post({"body": "again", "ttl": 300})
    queue.purge()
    assert queue.stats["messages"]["total"] == 0

    queue.delete()
    assert queue_names(client) == []


def test_unknown_message_ids_are_not_found(client: Client) -> None:
    """Ids no message has, whatever their shape, are 404s (an id past 2**63
    once made SQLite overflow: 500)."""
    queue = client.queue("ids", force_create=True)
    queue.post({"body": "x"})
    for unknown in (UNKNOWN_ID, OVERFLOW_ID, ZAQAR_STYLE_ID):
        with pytest.raises(zerrors.ResourceNotFound):
            queue.message(unknown)
        with pytest.raises(zerrors.ResourceNotFound):
            list(queue.messages(unknown))
        Message(queue, ttl=0, age=0, body=None,
                href=f"/v2/queues/ids/messages/{unknown}").delete()  # idempotent
    assert len(list(queue.messages(echo=True))) == 1
