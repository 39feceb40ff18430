"""Roles on the admin API (/v2/pools, /v2/flavors) against a real Keystone.

Under Zaqar's default policy (tidings.auth.policy) every pools operation
and the flavor writes (create, update, delete) need the admin role: a
member's token is refused with 403, a request without a token with 401
(authentication comes before the policy), and an admin's token succeeds.
Reading and listing flavors are unprotected in Zaqar (``flavors:get`` and
``flavors:get_all`` are ``""``), so a member reads them (200) like an admin.

The server is the shared Keystone-mode server of conftest.py, which runs
with pooling on over one pool (its own storage). The pools made here have
weight 0, so no queue of the other auth tests is ever placed on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth.conftest import DEFAULT_POOL
from tests.support.server import ServerProcess

ADMIN = "a-admin"


@dataclass
class Objects:
    """A pool and a flavor the admin made for one test, and names free for
    the PUTs to create."""

    pool: str
    flavor: str
    new_pool: str
    new_flavor: str
    tmp: Path

    def uri(self, name: str) -> str:
        return f"sqlite:///{self.tmp}/{name}.db"


@dataclass(frozen=True)
class Op:
    policy: str
    method: str
    path: str  # formatted with the Objects' fields
    body: Callable[[Objects], Any] | None
    admin_status: int
    member_status: int = 403

    def request(self, client: httpx.Client, objects: Objects) -> httpx.Response:
        path = self.path.format(pool=objects.pool, flavor=objects.flavor,
                                new_pool=objects.new_pool, new_flavor=objects.new_flavor)
        kwargs = {} if self.body is None else {"json": self.body(objects)}
        return client.request(self.method, path, **kwargs)


OPS = [
    Op("pools:create", "PUT", "/v2/pools/{new_pool}",
       lambda o: {"uri": o.uri(o.new_pool), "weight": 0}, 201),
    Op("pools:get", "GET", "/v2/pools/{pool}", None, 200),
    Op("pools:get_all", "GET", "/v2/pools", None, 200),
    Op("pools:update", "PATCH", "/v2/pools/{pool}", lambda o: {"options": {"patched": True}},
       200),
    Op("pools:delete", "DELETE", "/v2/pools/{pool}", None, 204),
    Op("flavors:create", "PUT", "/v2/flavors/{new_flavor}",
       lambda o: {"pool_list": [], "capabilities": {"new": True}}, 201),
    Op("flavors:get", "GET", "/v2/flavors/{flavor}", None, 200, member_status=200),
    Op("flavors:get_all", "GET", "/v2/flavors", None, 200, member_status=200),
    Op("flavors:update", "PATCH", "/v2/flavors/{flavor}",
       lambda o: {"pool_list": [o.pool], "capabilities": {"patched": True}}, 200),
    Op("flavors:delete", "DELETE", "/v2/flavors/{flavor}", None, 204),
]
IDS = [op.policy for op in OPS]


@pytest.fixture
def admin(as_user: Callable[..., httpx.Client]) -> httpx.Client:
    return as_user(ADMIN)


@pytest.fixture
def objects(admin: httpx.Client, tmp_path: Path) -> Iterator[Objects]:
    """As the admin: a pool (weight 0, an SQLite file) and a flavor without
    pools; removed afterwards with whatever the test created."""
    tag = uuid.uuid4().hex[:8]
    made = Objects(pool=f"p-{tag}", flavor=f"f-{tag}", new_pool=f"p-{tag}-new",
                   new_flavor=f"f-{tag}-new", tmp=tmp_path)
    created = admin.put(f"/v2/pools/{made.pool}", json={"uri": made.uri(made.pool),
                                                        "weight": 0})
    assert created.status_code == 201, created.text
    created = admin.put(f"/v2/flavors/{made.flavor}", json={"pool_list": [],
                                                            "capabilities": {"v": 1}})
    assert created.status_code == 201, created.text
    yield made
    # Flavors first: deleting one releases its pools.
    for path in (f"/v2/flavors/{made.flavor}", f"/v2/flavors/{made.new_flavor}",
                 f"/v2/pools/{made.pool}", f"/v2/pools/{made.new_pool}"):
        response = admin.delete(path)
        assert response.status_code == 204, (path, response.text)


def state(admin: httpx.Client, objects: Objects) -> dict[str, Any]:
    """What the admin sees of the test's pools and flavors."""
    seen: dict[str, Any] = {}
    for kind, names in (("pools", (objects.pool, objects.new_pool)),
                        ("flavors", (objects.flavor, objects.new_flavor))):
        for name in names:
            response = admin.get(f"/v2/{kind}/{name}", params={"detailed": "true"})
            seen[f"{kind}/{name}"] = (response.status_code, response.json()
                                      if response.status_code == 200 else None)
    return seen


def assert_refused(response: httpx.Response, status: int, title: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["title"] == title, body
    assert isinstance(body.get("description"), str) and body["description"], body


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_member_is_forbidden(op: Op, as_user: Callable[..., httpx.Client],
                             admin: httpx.Client, objects: Objects) -> None:
    before = state(admin, objects)
    response = op.request(as_user("a-member"), objects)
    if op.member_status == 403:
        assert_refused(response, 403, "Forbidden")
    else:  # reading flavors: unprotected in Zaqar's policy
        assert response.status_code == op.member_status, response.text
    # A refused write changed nothing.
    assert state(admin, objects) == before


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_no_token_is_unauthorized(op: Op, ks_server: ServerProcess, admin: httpx.Client,
                                  objects: Objects) -> None:
    before = state(admin, objects)
    with httpx.Client(base_url=ks_server.url, timeout=10,
                      headers={"Client-ID": str(uuid.uuid4())}) as anonymous:
        assert_refused(op.request(anonymous, objects), 401, "Unauthorized")
    assert state(admin, objects) == before


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_admin_succeeds(op: Op, admin: httpx.Client, objects: Objects) -> None:
    response = op.request(admin, objects)
    assert response.status_code == op.admin_status, response.text
    after = state(admin, objects)
    # Each operation did what it says.
    if op.policy == "pools:create":
        assert response.headers["Location"] == f"/v2/pools/{objects.new_pool}"
        assert after[f"pools/{objects.new_pool}"][1]["uri"] == objects.uri(objects.new_pool)
    elif op.policy == "pools:get":
        assert response.json()["name"] == objects.pool
        assert response.json()["uri"] == objects.uri(objects.pool)
    elif op.policy == "pools:get_all":
        # The default pool sorts before the test's own ("p-..."), so a full
        # page may leave it out: page through.
        names = names_listed(admin, "/v2/pools", "pools")
        assert {DEFAULT_POOL, objects.pool} <= names
    elif op.policy == "pools:update":
        assert response.json()["name"] == objects.pool
        assert after[f"pools/{objects.pool}"][1]["options"] == {"patched": True}
    elif op.policy == "pools:delete":
        assert after[f"pools/{objects.pool}"][0] == 404
    elif op.policy == "flavors:create":
        assert after[f"flavors/{objects.new_flavor}"][1]["capabilities"] == {"new": True}
    elif op.policy == "flavors:get":
        assert response.json()["name"] == objects.flavor
        assert response.json()["capabilities"] == {"v": 1}
    elif op.policy == "flavors:get_all":
        assert objects.flavor in names_listed(admin, "/v2/flavors", "flavors")
    elif op.policy == "flavors:update":
        assert response.json()["pool_list"] == [objects.pool]
        assert after[f"flavors/{objects.flavor}"][1]["capabilities"] == {"patched": True}
        assert after[f"pools/{objects.pool}"][1]["flavor"] == objects.flavor
    elif op.policy == "flavors:delete":
        assert after[f"flavors/{objects.flavor}"][0] == 404


def names_listed(client: httpx.Client, path: str, key: str) -> set[str]:
    names: set[str] = set()
    params: dict[str, str] = {"limit": "20"}
    while True:
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        items = response.json()[key]
        if not items:
            return names
        names |= {item["name"] for item in items}
        params["marker"] = items[-1]["name"]


def test_policy_covers_every_admin_operation() -> None:
    """The parametrization above names every pools and flavors policy."""
    from tidings.auth.policy import DEFAULT_RULES

    admin_rules = {name for name in DEFAULT_RULES if name.split(":")[0] in ("pools", "flavors")}
    assert admin_rules == set(IDS)
    for op in OPS:
        assert DEFAULT_RULES[op.policy] == ("role:admin" if op.member_status == 403 else "")


@pytest.mark.parametrize(("path", "key", "status"), [
    ("/v2/pools", "pools", 403),
    ("/v2/flavors", "flavors", 200),  # flavors:get_all is unprotected
], ids=["pools", "flavors"])
def test_member_of_project_b_lists(path: str, key: str, status: int,
                                   as_user: Callable[..., httpx.Client],
                                   objects: Objects) -> None:
    response = as_user("b-member").get(path)
    if status == 403:
        assert_refused(response, 403, "Forbidden")
    else:
        assert response.status_code == 200, response.text
        assert isinstance(response.json()[key], list)
