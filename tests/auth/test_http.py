"""HTTP with auth=keystone against a real Keystone: tokens, tenant
isolation, roles.

Every request of project B below also sends ``X-Project-ID`` naming project
A: under keystone the token's project wins, the header is ignored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.keystone import KeystoneServer
from tests.support.server import ServerProcess

Make = Callable[..., httpx.Client]


# --- authentication -----------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-Auth-Token": "bogus"}, {"X-Auth-Token": ""}])
@pytest.mark.parametrize("method, path", [
    ("GET", "/v2/queues"), ("PUT", "/v2/queues/q"), ("GET", "/v2/queues/q/messages"),
    ("GET", "/v2/health"), ("GET", "/v2"), ("GET", "/v2/no/such/route"),
])
def test_missing_or_invalid_token_is_401(ks_server: ServerProcess, keystone: KeystoneServer,
                                         headers: dict, method: str, path: str) -> None:
    response = httpx.request(method, ks_server.url + path, timeout=10, headers={
        "Client-ID": str(uuid.uuid4()), "X-Project-ID": "anything", **headers})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
    assert response.json()["title"] == "Unauthorized"


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v2/ping", 204), ("HEAD", "/v2/ping", 204), ("HEAD", "/v2/health", 204),
    ("GET", "/", 300),
])
def test_liveness_needs_no_token(ks_server: ServerProcess, method: str, path: str,
                                 status: int) -> None:
    response = httpx.request(method, ks_server.url + path, timeout=10, headers={
        "Client-ID": str(uuid.uuid4()), "X-Project-ID": "lb"})
    assert response.status_code == status


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/healthz", "ok"), ("HEAD", "/healthz", ""),
    ("GET", "/readyz", "ready"), ("HEAD", "/readyz", ""),
])
def test_probes_need_no_token_nor_headers(ks_server: ServerProcess, method: str, path: str,
                                          body: str) -> None:
    response = httpx.request(method, ks_server.url + path, timeout=10)
    assert response.status_code == 200
    assert response.text.strip() == body


def test_project_comes_from_the_token(as_user: Make, projects: dict, queue: str) -> None:
    a = as_user("a-member", **{"X-Project-ID": "someone-else"})
    assert a.put(f"/v2/queues/{queue}").status_code == 201
    plain = as_user("a-member")  # no X-Project-ID at all
    assert [q["name"] for q in plain.get("/v2/queues").json()["queues"]] == [queue]
    assert plain.get("/v2/queues").status_code == 200


def test_revoked_token_is_refused_once_its_cache_entry_lapses(
        ks_server: ServerProcess, keystone: KeystoneServer, queue: str) -> None:
    token = keystone.token("a-member")
    headers = {"X-Auth-Token": token, "Client-ID": str(uuid.uuid4())}
    url = f"{ks_server.url}/v2/queues/{queue}/stats"
    assert httpx.get(url, headers=headers).status_code == 200
    keystone.revoke(token)
    time.sleep(1.2)  # the server caches validations for one second
    assert httpx.get(url, headers=headers).status_code == 401


def test_keystone_unreachable_is_503(tmp_path_factory: pytest.TempPathFactory,
                                     keystone: KeystoneServer, tokens: dict) -> None:
    from tests.auth.conftest import auth_env, start_server
    from tests.support.ports import free_port

    dead = KeystoneServer(base=keystone.base, port=free_port())  # nothing listens there
    proc = start_server(tmp_path_factory.mktemp("dead-ks"), auth_env(dead))
    try:
        response = httpx.get(proc.url + "/v2/queues", timeout=10, headers={
            "X-Auth-Token": tokens["a-member"], "Client-ID": str(uuid.uuid4())})
        assert response.status_code == 503, response.text
        assert response.json()["title"] == "Service temporarily unavailable"
        assert "Traceback" not in proc.log_path.read_text()  # type: ignore[union-attr]
    finally:
        proc.stop()


# --- roles ---------------------------------------------------------------------


def test_detailed_health_needs_the_admin_role(as_user: Make) -> None:
    member = as_user("a-member").get("/v2/health")
    assert member.status_code == 403
    assert member.json()["title"] == "Forbidden"
    assert "health:get" in member.json()["description"]
    admin = as_user("a-admin").get("/v2/health")
    assert admin.status_code == 200
    assert admin.json()["storage_reachable"] is True
    # The admin sees per-project counts (under each pool here), not totals.
    assert '"message_counts"' in admin.text and "message_totals" not in admin.text, admin.text
    # HEAD and ping: anyone with a token too.
    assert as_user("b-member").head("/v2/health").status_code == 204
    assert as_user("b-member").get("/v2/ping").status_code == 204


# --- tenant isolation -----------------------------------------------------------


@dataclass
class Seeded:
    """Project A's queue: metadata, 3 messages, one of them claimed."""

    queue: str
    message_ids: list[str]
    claim_id: str
    claimed_id: str


@pytest.fixture(scope="module")
def seeded(ks_server: ServerProcess, tokens: dict) -> Iterator[Seeded]:
    headers = {"X-Auth-Token": tokens["a-member"], "Client-ID": str(uuid.uuid4())}
    queue = f"private-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=ks_server.url, headers=headers, timeout=10) as a:
        assert a.put(f"/v2/queues/{queue}", json={"owner": "a"}).status_code == 201
        posted = a.post(f"/v2/queues/{queue}/messages", json={"messages": [
            {"body": {"n": n}, "ttl": 3600} for n in range(3)]})
        ids = [href.rsplit("/", 1)[1] for href in posted.json()["resources"]]
        claim = a.post(f"/v2/queues/{queue}/claims?limit=1", json={"ttl": 3600, "grace": 60})
        assert claim.status_code == 201
        claim_id = claim.headers["Location"].rsplit("/", 1)[1]
        yield Seeded(queue, ids, claim_id, claim.json()["messages"][0]["id"])


def assert_a_untouched(a: httpx.Client, s: Seeded) -> None:
    stats = a.get(f"/v2/queues/{s.queue}/stats").json()["messages"]
    assert (stats["total"], stats["claimed"]) == (3, 1), stats
    assert a.get(f"/v2/queues/{s.queue}").json()["owner"] == "a"
    assert a.get(f"/v2/queues/{s.queue}/claims/{s.claim_id}").status_code == 200
    assert s.queue in [q["name"] for q in a.get("/v2/queues").json()["queues"]]


def _b_stats_total(b: httpx.Client, queue: str) -> int:
    return b.get(f"/v2/queues/{queue}/stats").json()["messages"]["total"]


# Each case: what project B does to A's queue, and what B must see.
def list_queues(b: httpx.Client, s: Seeded) -> None:
    assert s.queue not in [q["name"] for q in b.get("/v2/queues?detailed=true"
                                                    ).json()["queues"]]


def get_queue(b: httpx.Client, s: Seeded) -> None:
    response = b.get(f"/v2/queues/{s.queue}")
    assert response.status_code == 200 and "owner" not in response.json()


def queue_stats(b: httpx.Client, s: Seeded) -> None:
    assert _b_stats_total(b, s.queue) == 0


def list_messages(b: httpx.Client, s: Seeded) -> None:
    response = b.get(f"/v2/queues/{s.queue}/messages?include_claimed=true&echo=true")
    assert response.status_code == 200 and response.json()["messages"] == []


def get_message(b: httpx.Client, s: Seeded) -> None:
    assert b.get(f"/v2/queues/{s.queue}/messages/{s.message_ids[0]}").status_code == 404


def get_messages_by_ids(b: httpx.Client, s: Seeded) -> None:
    ids = ",".join(s.message_ids)
    assert b.get(f"/v2/queues/{s.queue}/messages?ids={ids}").status_code == 404


def delete_message(b: httpx.Client, s: Seeded) -> None:
    assert b.delete(f"/v2/queues/{s.queue}/messages/{s.message_ids[0]}").status_code == 204


def delete_messages_by_ids(b: httpx.Client, s: Seeded) -> None:
    ids = ",".join(s.message_ids)
    assert b.delete(f"/v2/queues/{s.queue}/messages?ids={ids}").status_code == 204


def pop_messages(b: httpx.Client, s: Seeded) -> None:
    response = b.delete(f"/v2/queues/{s.queue}/messages?pop=5")
    assert response.status_code == 200 and response.json()["messages"] == []


def claim_messages(b: httpx.Client, s: Seeded) -> None:
    assert b.post(f"/v2/queues/{s.queue}/claims", json={"ttl": 60}).status_code == 204


def get_claim(b: httpx.Client, s: Seeded) -> None:
    assert b.get(f"/v2/queues/{s.queue}/claims/{s.claim_id}").status_code == 404


def update_claim(b: httpx.Client, s: Seeded) -> None:
    response = b.patch(f"/v2/queues/{s.queue}/claims/{s.claim_id}", json={"ttl": 120})
    assert response.status_code == 404


def release_claim(b: httpx.Client, s: Seeded) -> None:
    assert b.delete(f"/v2/queues/{s.queue}/claims/{s.claim_id}").status_code == 204


def post_message(b: httpx.Client, s: Seeded) -> None:
    response = b.post(f"/v2/queues/{s.queue}/messages", json={"messages": [{"body": "b"}]})
    assert response.status_code == 201
    assert _b_stats_total(b, s.queue) == 1  # in B's own queue of that name
    b.delete(f"/v2/queues/{s.queue}")


def create_queue(b: httpx.Client, s: Seeded) -> None:
    assert b.put(f"/v2/queues/{s.queue}", json={"owner": "b"}).status_code == 201
    assert b.get(f"/v2/queues/{s.queue}").json()["owner"] == "b"
    b.delete(f"/v2/queues/{s.queue}")


def update_queue(b: httpx.Client, s: Seeded) -> None:
    response = b.patch(f"/v2/queues/{s.queue}", json=[
        {"op": "replace", "path": "/metadata/owner", "value": "b"}],
        headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"})
    assert response.status_code == 404  # B has no such queue


def delete_queue(b: httpx.Client, s: Seeded) -> None:
    assert b.delete(f"/v2/queues/{s.queue}").status_code == 204


def purge_queue(b: httpx.Client, s: Seeded) -> None:
    assert b.post(f"/v2/queues/{s.queue}/purge").status_code == 204


def share_queue(b: httpx.Client, s: Seeded) -> None:
    # Signed for B's project (checked by the test): it cannot open A's queue.
    assert b.post(f"/v2/queues/{s.queue}/share", json={"methods": ["GET"]}).status_code == 200


CASES = [list_queues, get_queue, queue_stats, list_messages, get_message,
         get_messages_by_ids, delete_message, delete_messages_by_ids, pop_messages,
         claim_messages, get_claim, update_claim, release_claim, post_message, create_queue,
         update_queue, delete_queue, purge_queue, share_queue]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_project_b_cannot_reach_project_a(case: Callable[[httpx.Client, Seeded], None],
                                          seeded: Seeded, as_user: Make,
                                          projects: dict) -> None:
    b = as_user("b-member", **{"X-Project-ID": projects["a"]})
    case(b, seeded)
    assert_a_untouched(as_user("a-member"), seeded)
    if case is share_queue:
        assert b.post(f"/v2/queues/{seeded.queue}/share").json()["project"] == projects["b"]
