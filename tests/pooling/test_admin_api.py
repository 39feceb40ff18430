"""The pools and flavors API with python-zaqarclient, against a server
with pooling on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from zaqarclient.queues.v2.client import Client
from zaqarclient.transport import errors as zerrors

from tests.support.server import ServerProcess

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def pooled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("pooled")
    server = ServerProcess(
        storage=f"sqlite:///{base}/unused.db", log_path=base / "server.log",
        env={"TIDINGS_POOLING__ENABLED": "true",
             "TIDINGS_POOLING__CONTROL_STORAGE": f"sqlite:///{base}/control.db"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(pooled_server: ServerProcess) -> Client:
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": "admin"}}}
    return Client(pooled_server.url, version=2, conf=conf)


def test_pools_and_flavors_with_zaqarclient(client: Client, pooled_server: ServerProcess,
                                            tmp_path: Path) -> None:
    a = client.pool("pa", weight=100, uri=f"sqlite:///{tmp_path}/a.db",
                    options={"note": "a"})
    client.pool("pb", weight=50, uri=f"sqlite:///{tmp_path}/b.db")
    got = a.get()
    assert (got["name"], got["weight"], got["href"]) == ("pa", 100, "/v2/pools/pa")
    listed = list(client.pools(detailed=True))
    assert [(p.name, p.weight) for p in listed] == [("pa", 100), ("pb", 50)]
    assert listed[0].options == {"note": "a"}
    # Paging follows the "next" links.
    assert [p.name for p in client.pools(limit=1).stream()] == ["pa", "pb"]
    a.update({"weight": 10})
    assert a.get()["weight"] == 10

    flavor = client.flavor("gold", pool_list=["pb"], capabilities={"durable": True})
    assert flavor.get()["pool_list"] == ["pb"]
    assert client.pool("pb", auto_create=False).get()["flavor"] == "gold"
    assert [f.name for f in client.flavors()] == ["gold"]
    flavor.update({"pool_list": ["pa", "pb"]})
    assert sorted(flavor.get()["pool_list"]) == ["pa", "pb"]
    flavor.update({"pool_list": ["pb"]})

    # Queues land on pools; a flavored queue on the flavor's pool.
    q = client.queue(f"zq-{uuid.uuid4().hex[:6]}", force_create=True)
    q.post([{"body": 1, "ttl": 600}])
    http = httpx.Client(base_url=pooled_server.url,
                        headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": "admin"})
    assert http.put("/v2/queues/gq", json={"_flavor": "gold"}).status_code == 201
    g = client.queue("gq", force_create=False)
    g.post([{"body": 2, "ttl": 600}])
    assert [m.body for m in g.messages(echo=True)] == [2]
    health = http.get("/v2/health").json()
    assert set(health["details"]["pools"]) == {"pa", "pb"}

    # A pool holding queues cannot go (403, as Zaqar refuses).
    resp = http.delete("/v2/pools/pb")
    assert resp.status_code == 403 and resp.json()["title"] == "Unable to delete"
    with pytest.raises(zerrors.ForbiddenError):
        client.pool("pb", auto_create=False).delete()
    # Bad input: an unknown scheme, a PATCH with nothing to change.
    assert http.put("/v2/pools/bad", json={"uri": "nope://x", "weight": 1}).status_code == 400
    assert http.patch("/v2/pools/pa", json={}).status_code == 400
    assert http.get("/v2/pools/missing").status_code == 404
    # An unused pool goes; the flavor goes, its pools stay.
    client.pool("pc", weight=0, uri=f"sqlite:///{tmp_path}/c.db")
    client.pool("pc", auto_create=False).delete()
    assert http.get("/v2/pools/pc").status_code == 404
    flavor.delete()
    assert http.get("/v2/flavors/gold").status_code == 404
    assert client.pool("pb", auto_create=False).get()["flavor"] is None
