"""Crash durability: what the server acknowledged survives a SIGKILL.

Each test runs its own server on a fresh SQLite file (not the session's
shared server), kills it with SIGKILL (no shutdown hooks run) and starts it
again on the same port and database.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess

QUEUE = "durable"
THREADS = 16


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(storage=f"sqlite:///{tmp_path}/durable.db",
                         log_path=tmp_path / "server.log")
    proc.start()
    yield proc
    proc.stop()


def headers(project: str) -> dict[str, str]:
    return {"X-Project-ID": project, "Client-ID": str(uuid.uuid4())}


def post_one(client: httpx.Client, seq: int) -> str:
    resp = client.post(f"/v2/queues/{QUEUE}/messages",
                       json={"messages": [{"body": {"seq": seq}, "ttl": 3600}]})
    assert resp.status_code == 201, resp.text
    [href] = resp.json()["resources"]
    return href.rsplit("/", 1)[1]


def list_all(client: httpx.Client) -> list[dict[str, Any]]:
    """Every message of the queue, claimed ones included, paging by marker."""
    found: list[dict[str, Any]] = []
    url = f"/v2/queues/{QUEUE}/messages?echo=true&include_claimed=true&limit=20"
    while True:
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        if not page["messages"]:
            return found
        found.extend(page["messages"])
        [link] = [link for link in page["links"] if link["rel"] == "next"]
        url = link["href"]


def claim(client: httpx.Client, ttl: int = 120, limit: int = 20) -> tuple[str | None, list[str]]:
    resp = client.post(f"/v2/queues/{QUEUE}/claims?limit={limit}",
                       json={"ttl": ttl, "grace": 60})
    if resp.status_code == 204:
        return None, []
    assert resp.status_code == 201, resp.text
    claim_id = resp.headers["location"].rsplit("/", 1)[1]
    return claim_id, [m["id"] for m in resp.json()["messages"]]


def test_acknowledged_posts_and_claims_survive_sigkill(own_server: ServerProcess) -> None:
    project = f"durable-{uuid.uuid4().hex[:8]}"
    total = 500
    local = threading.local()
    clients: list[httpx.Client] = []

    def thread_client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=own_server.url, headers=headers(project),
                                        timeout=10)
            clients.append(local.client)
        return local.client

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            ids = list(pool.map(lambda seq: post_one(thread_client(), seq), range(total)))
    finally:
        for c in clients:
            c.close()
    acked = dict(zip(range(total), ids))
    assert len(set(ids)) == total

    with httpx.Client(base_url=own_server.url, headers=headers(project), timeout=10) as client:
        held_id, held = claim(client, ttl=120, limit=20)
        assert held_id is not None and len(held) == 20

    own_server.kill()
    own_server.start()

    with httpx.Client(base_url=own_server.url, headers=headers(project), timeout=10) as client:
        # Every acknowledged message is there, exactly once, with its body.
        stored = list_all(client)
        stored_ids = [m["id"] for m in stored]
        assert len(stored_ids) == len(set(stored_ids)) == total
        assert {m["body"]["seq"]: m["id"] for m in stored} == acked
        stats = client.get(f"/v2/queues/{QUEUE}/stats").json()["messages"]
        assert (stats["total"], stats["claimed"], stats["free"]) == (total, 20, total - 20)

        # The claim still holds: GET works and its messages stay out of reach.
        resp = client.get(f"/v2/queues/{QUEUE}/claims/{held_id}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["ttl"] == 120
        assert sorted(m["id"] for m in body["messages"]) == sorted(held)
        claimed_after: list[str] = []
        while True:
            other_id, got = claim(client, ttl=120, limit=20)
            if other_id is None:
                break
            claimed_after.extend(got)
        assert not set(claimed_after) & set(held)
        assert sorted(claimed_after + held) == sorted(ids)

        # The old claim still works for deletes.
        resp = client.delete(f"/v2/queues/{QUEUE}/messages/{held[0]}",
                             params={"claim_id": held_id})
        assert resp.status_code == 204, resp.text
        assert client.get(f"/v2/queues/{QUEUE}/messages/{held[0]}").status_code == 404


def test_posts_acknowledged_before_a_crash_mid_load_survive(own_server: ServerProcess) -> None:
    """SIGKILL while posts are in flight: every 201 survives, nothing is
    stored twice, and a message whose answer was lost is there at most once."""
    project = f"crash-{uuid.uuid4().hex[:8]}"
    acked: dict[int, str] = {}
    attempted: set[int] = set()
    lock = threading.Lock()
    enough = threading.Event()
    failures: list[BaseException] = []
    counter = iter(range(10**9))

    def worker() -> None:
        with httpx.Client(base_url=own_server.url, headers=headers(project), timeout=5) as client:
            while True:
                with lock:
                    seq = next(counter)
                    attempted.add(seq)
                try:
                    message_id = post_one(client, seq)
                except httpx.TransportError:
                    return  # the server is gone
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    enough.set()
                    return
                with lock:
                    acked[seq] = message_id
                    if len(acked) >= 300:
                        enough.set()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(30), "the server did not acknowledge 300 posts in 30 s"
        own_server.kill()
    finally:
        own_server.kill()
        for t in threads:
            t.join(15)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures

    own_server.start()
    with httpx.Client(base_url=own_server.url, headers=headers(project), timeout=10) as client:
        stored = list_all(client)
    stored_ids = [m["id"] for m in stored]
    stored_seqs = [m["body"]["seq"] for m in stored]
    assert len(stored_ids) == len(set(stored_ids))
    assert len(stored_seqs) == len(set(stored_seqs))
    by_seq = dict(zip(stored_seqs, stored_ids))
    missing = {seq for seq in acked if by_seq.get(seq) != acked[seq]}
    assert not missing, f"{len(missing)} acknowledged messages lost or changed"
    assert set(stored_seqs) <= attempted
