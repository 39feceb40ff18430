"""Competing consumers through the real server process.

Eight consumers, each a thread with its own HTTP client (and Client-ID),
claim (limit 10) and delete with the claim id until nothing is left to
claim. No claim can expire during the test (ttl 600), so every message must
be received exactly once.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import httpx

QUEUE = "jobs"
MESSAGES = 2000
CONSUMERS = 8
POST_BATCH = 100


def test_competing_consumers_receive_each_message_once(server_url: str, project: str) -> None:
    def client() -> httpx.Client:
        return httpx.Client(base_url=server_url, timeout=10,
                            headers={"X-Project-ID": project, "Client-ID": str(uuid.uuid4())})

    posted: list[str] = []
    with client() as producer:
        for start in range(0, MESSAGES, POST_BATCH):
            batch = [{"body": {"seq": seq}, "ttl": 3600}
                     for seq in range(start, start + POST_BATCH)]
            resp = producer.post(f"/v2/queues/{QUEUE}/messages", json={"messages": batch})
            assert resp.status_code == 201, resp.text
            posted.extend(href.rsplit("/", 1)[1] for href in resp.json()["resources"])
    assert len(set(posted)) == MESSAGES

    received: list[list[tuple[str, int]]] = [[] for _ in range(CONSUMERS)]
    errors: list[str] = []
    start_line = threading.Barrier(CONSUMERS)

    def consume(index: int) -> None:
        mine = received[index]
        try:
            with client() as http:
                start_line.wait(10)
                while True:
                    resp = http.post(f"/v2/queues/{QUEUE}/claims?limit=10",
                                     json={"ttl": 600, "grace": 60})
                    if resp.status_code == 204:
                        return  # nothing left that is not held by someone
                    if resp.status_code != 201:
                        errors.append(f"claim: {resp.status_code} {resp.text}")
                        return
                    claim_id = resp.headers["location"].rsplit("/", 1)[1]
                    messages = resp.json()["messages"]
                    if not 0 < len(messages) <= 10:
                        errors.append(f"claim of {len(messages)} messages")
                    for message in messages:
                        if not message["href"].endswith(f"?claim_id={claim_id}"):
                            errors.append(f"message {message['id']} not in claim {claim_id}")
                        mine.append((message["id"], message["body"]["seq"]))
                        resp = http.delete(f"/v2/queues/{QUEUE}/messages/{message['id']}",
                                           params={"claim_id": claim_id})
                        if resp.status_code != 204:
                            errors.append(f"delete: {resp.status_code} {resp.text}")
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(exc))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(CONSUMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a consumer is stuck"
    assert not errors, errors[:10]

    everything = [item for mine in received for item in mine]
    counts = Counter(message_id for message_id, _ in everything)
    duplicates = {message_id: n for message_id, n in counts.items() if n > 1}
    assert not duplicates, f"received more than once: {list(duplicates.items())[:10]}"
    assert sorted(counts) == sorted(posted)
    assert sorted(seq for _, seq in everything) == list(range(MESSAGES))
    # The work was shared (each consumer got some), not done by one.
    assert all(received), [len(mine) for mine in received]

    with client() as http:
        stats = http.get(f"/v2/queues/{QUEUE}/stats").json()["messages"]
        assert (stats["total"], stats["claimed"], stats["free"]) == (0, 0, 0)
        listing = http.get(f"/v2/queues/{QUEUE}/messages",
                           params={"echo": "true", "include_claimed": "true"})
        assert listing.status_code == 200
        assert listing.json()["messages"] == []
