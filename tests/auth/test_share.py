"""Pre-signed URLs and a custom policy file, on servers using a real Keystone."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.auth.conftest import SECRET, auth_env, start_server
from tests.support.keystone import KeystoneServer
from tests.support.server import ServerProcess
from tidings.auth import signed

Make = Callable[..., httpx.Client]


def url_headers(share: dict, **override: str) -> dict[str, str]:
    headers = {
        "URL-Signature": share["signature"],
        "URL-Expires": share["expires"],
        "URL-Methods": ",".join(share["methods"]),
        "URL-Paths": ",".join(share["paths"]),
        "X-Project-ID": share["project"],
        "Client-ID": str(uuid.uuid4()),
    }
    return headers | override


@pytest.fixture
def shared(as_user: Make, queue: str) -> dict:
    a = as_user("a-member")
    a.post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": "hello"}]})
    response = a.post(f"/v2/queues/{queue}/share",
                      json={"paths": ["messages"], "methods": ["GET", "POST"]})
    assert response.status_code == 200, response.text
    return response.json()


def test_share_answers_zaqars_fields(shared: dict, queue: str, projects: dict) -> None:
    assert set(shared) == {"signature", "expires", "paths", "methods", "project"}
    assert shared["paths"] == [f"/v2/queues/{queue}/messages"]
    assert shared["methods"] == ["GET", "POST"]
    assert shared["project"] == projects["a"]
    assert len(shared["signature"]) == 64


def test_signed_url_allows_its_paths_and_methods(ks_server: ServerProcess, shared: dict,
                                                 as_user: Make, queue: str) -> None:
    with httpx.Client(base_url=ks_server.url, headers=url_headers(shared), timeout=10) as anon:
        listed = anon.get(f"/v2/queues/{queue}/messages?echo=true")
        assert listed.status_code == 200, listed.text
        assert [m["body"] for m in listed.json()["messages"]] == ["hello"]
        message_id = listed.json()["messages"][0]["id"]
        # A single message, under the signed path.
        assert anon.get(f"/v2/queues/{queue}/messages/{message_id}").status_code == 200
        posted = anon.post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": "hi"}]})
        assert posted.status_code == 201
    # The post landed in project A.
    stats = as_user("a-member").get(f"/v2/queues/{queue}/stats").json()
    assert stats["messages"]["total"] == 2


def _expired(share: dict) -> dict:
    """The same URL signed (with the server's key) to expire in the past."""
    past = signed.create(SECRET.encode(), share["paths"], share["project"], share["methods"],
                         "2001-01-01T00:00:00", now=0)
    return {"URL-Signature": past["signature"], "URL-Expires": past["expires"]}


def _tampered(share: dict) -> dict:
    sig = share["signature"]
    return {"URL-Signature": ("0" if sig[0] != "0" else "1") + sig[1:]}


@pytest.mark.parametrize("method, path, change", [
    ("GET", "/v2/queues/{queue}/claims", lambda s: {}),
    ("POST", "/v2/queues/{queue}/claims", lambda s: {}),
    ("GET", "/v2/queues/other-queue/messages", lambda s: {}),
    ("GET", "/v2/queues", lambda s: {}),
    ("GET", "/v2/queues/{queue}/stats", lambda s: {}),
    ("DELETE", "/v2/queues/{queue}/messages?pop=1", lambda s: {}),
    ("GET", "/v2/queues/{queue}/messages", _expired),
    ("GET", "/v2/queues/{queue}/messages", _tampered),
    ("DELETE", "/v2/queues/{queue}/messages?pop=1",
     lambda s: {"URL-Methods": "DELETE,GET,POST"}),
    ("GET", "/v2/queues/{queue}/messages",
     lambda s: {"URL-Paths": "/v2/queues/{queue}/messages,/v2/queues/{queue}/claims"}),
    ("GET", "/v2/queues/{queue}/messages", lambda s: {"X-Project-ID": "another-project"}),
])
def test_signed_url_refuses_everything_else(ks_server: ServerProcess, shared: dict,
                                            queue: str, method: str, path: str,
                                            change: Callable[[dict], dict]) -> None:
    override = {k: v.format(queue=queue) for k, v in change(shared).items()}
    response = httpx.request(method, ks_server.url + path.format(queue=queue), timeout=10,
                             headers=url_headers(shared, **override))
    assert response.status_code == 403, response.text
    assert response.json()["title"] == "Forbidden"


def test_another_projects_signed_url_sees_only_that_project(
        ks_server: ServerProcess, as_user: Make, queue: str) -> None:
    b_share = as_user("b-member").post(f"/v2/queues/{queue}/share", json={}).json()
    as_user("a-member").post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": 1}]})
    response = httpx.get(f"{ks_server.url}/v2/queues/{queue}/messages?echo=true",
                         headers=url_headers(b_share))
    assert response.status_code == 200 and response.json()["messages"] == []


@pytest.mark.parametrize("body, status", [
    ({"paths": ["stats"]}, 400), ({"methods": ["HEAD"]}, 400), ({"bogus": 1}, 400),
    ({"expires": "2001-01-01T00:00:00"}, 400), ({"expires": "tomorrow"}, 400),
    ({"paths": "messages"}, 400),
])
def test_share_rejects_bad_requests(as_user: Make, queue: str, body: dict, status: int) -> None:
    response = as_user("a-member").post(f"/v2/queues/{queue}/share", json=body)
    assert response.status_code == status, response.text


# --- a custom policy file, and no signing key -------------------------------------

POLICY = """\
# Members may no longer delete queues; a made-up role may purge.
"queues:delete": "rule:context_is_admin"
"queues:purge": "role:purger or role:admin"
"""


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory: pytest.TempPathFactory, keystone: KeystoneServer
                  ) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("policy-server")
    (base / "policy.yaml").write_text(POLICY)
    proc = start_server(base, auth_env(
        keystone, TIDINGS_AUTH__POLICY_FILE=str(base / "policy.yaml")))
    yield proc
    proc.stop()


def test_policy_file_denies_queue_delete_to_members(policy_server: ServerProcess,
                                                    as_user: Make, queue: str) -> None:
    member = as_user("a-member", server=policy_server)
    assert member.put(f"/v2/queues/{queue}").status_code == 201
    denied = member.delete(f"/v2/queues/{queue}")
    assert denied.status_code == 403
    assert "queues:delete" in denied.json()["description"]
    assert member.post(f"/v2/queues/{queue}/purge", json={}).status_code == 403
    assert member.get(f"/v2/queues/{queue}/stats").status_code == 200  # defaults kept
    admin = as_user("a-admin", server=policy_server)
    assert admin.post(f"/v2/queues/{queue}/purge").status_code == 204
    assert admin.delete(f"/v2/queues/{queue}").status_code == 204


def test_share_without_a_configured_secret_signs_with_the_stored_key(
        policy_server: ServerProcess, as_user: Make, queue: str) -> None:
    """No auth.secret_key: the key generated and kept beside the database
    signs (Zaqar's share works out of the box: python-zaqarclient's
    test_signed_url), and the server accepts what it signed."""
    member = as_user("a-member", server=policy_server)
    member.post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": "kept"}]})
    response = member.post(f"/v2/queues/{queue}/share", json={"methods": ["GET"]})
    assert response.status_code == 200, response.text
    share = response.json()
    with httpx.Client(base_url=policy_server.url, headers=url_headers(share),
                      timeout=10) as anon:
        listed = anon.get(f"/v2/queues/{queue}/messages?echo=true")
        assert listed.status_code == 200, listed.text
        assert [m["body"] for m in listed.json()["messages"]] == ["kept"]
    database = urlsplit(policy_server.storage).path.removeprefix("/")
    key_file = Path(f"{database}.signed-urls.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert share["signature"] == signed.signature(
        key.encode(), share["paths"], share["project"], share["methods"], share["expires"])


def test_invalid_policy_file_stops_the_server(tmp_path_factory: pytest.TempPathFactory,
                                              keystone: KeystoneServer) -> None:
    base = tmp_path_factory.mktemp("bad-policy")
    (base / "policy.yaml").write_text('"queues:get": "role:admin or"\n')
    with pytest.raises(RuntimeError, match="exited"):
        start_server(base, auth_env(keystone, TIDINGS_AUTH__POLICY_FILE=str(base / "policy.yaml")))
    assert "invalid rule" in (base / "server.log").read_text()
