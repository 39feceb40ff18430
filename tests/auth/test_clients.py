"""python-zaqarclient and openstacksdk against Tidings with Keystone on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from zaqarclient.queues.v2.client import Client
from zaqarclient.transport import errors as zerrors

from tests.support.keystone import PASSWORD, USERS, KeystoneServer
from tests.support.server import ServerProcess

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def ks_auth(keystone: KeystoneServer, user: str) -> v3.Password:
    return v3.Password(auth_url=keystone.api, username=user, password=PASSWORD,
                       project_name=USERS[user][0], user_domain_id="default",
                       project_domain_id="default")


def test_zaqarclient_with_a_keystoneauth_session(ks_server: ServerProcess,
                                                 keystone: KeystoneServer) -> None:
    sess = ks_session.Session(auth=ks_auth(keystone, "a-member"))
    client = Client(ks_server.url, version=2, session=sess)
    name = f"zc-{uuid.uuid4().hex[:8]}"
    queue = client.queue(name, force_create=True)
    queue.post([{"body": {"n": 1}, "ttl": 600}, {"body": {"n": 2}, "ttl": 600}])
    claim = queue.claim(ttl=60, grace=60, limit=1)
    claimed = list(claim)
    assert [m.body for m in claimed] == [{"n": 1}]
    claimed[0].delete()
    assert queue.stats["messages"]["total"] == 1
    assert name in [q.name for q in client.queues()[0].stream()]
    # Another project's client does not see the queue.
    other = Client(ks_server.url, version=2,
                   session=ks_session.Session(auth=ks_auth(keystone, "b-member")))
    assert name not in [q.name for q in other.queues()[0].stream()]
    assert other.queue(name).stats["messages"]["total"] == 0
    # Detailed health: admin only.
    with pytest.raises(zerrors.ForbiddenError):
        client.health()
    admin = Client(ks_server.url, version=2,
                   session=ks_session.Session(auth=ks_auth(keystone, "a-admin")))
    assert admin.health()["storage_reachable"] is True
    queue.delete()


def test_zaqarclient_with_keystone_auth_opts(ks_server: ServerProcess,
                                             keystone: KeystoneServer) -> None:
    conf = {"auth_opts": {"backend": "keystone", "options": {
        "os_username": "b-member", "os_password": PASSWORD, "os_project_name": "tidings-b",
        "os_auth_url": keystone.api, "os_user_domain_id": "default",
        "os_project_domain_id": "default"}}}
    client = Client(ks_server.url, version=2, conf=conf)
    queue = client.queue(f"zc-{uuid.uuid4().hex[:8]}")
    queue.post({"body": "hello", "ttl": 600})
    assert [m.body for m in queue.messages(echo=True)] == ["hello"]


def test_zaqarclient_with_a_bad_password_gets_no_token(ks_server: ServerProcess,
                                                       keystone: KeystoneServer) -> None:
    auth = v3.Password(auth_url=keystone.api, username="a-member", password="wrong",
                       project_name="tidings-a", user_domain_id="default",
                       project_domain_id="default")
    client = Client(ks_server.url, version=2, session=ks_session.Session(auth=auth))
    with pytest.raises(ks_exceptions.Unauthorized):
        list(client.queues()[0].stream())


@pytest.fixture
def cloud(tmp_path: Path, ks_server: ServerProcess, keystone: KeystoneServer,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[openstack.connection.Connection]:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(f"""\
clouds:
  tidings:
    auth:
      auth_url: {keystone.api}
      username: a-member
      password: {PASSWORD}
      project_name: tidings-a
      user_domain_id: default
      project_domain_id: default
    identity_api_version: 3
    region_name: RegionOne
    message_endpoint_override: {ks_server.url}
""")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    conn = openstack.connect(cloud="tidings")
    yield conn
    conn.close()


def test_openstacksdk_with_clouds_yaml(cloud: openstack.connection.Connection,
                                       projects: dict) -> None:
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    cloud.message.create_queue(name=name)
    assert name in [q.name for q in cloud.message.queues()]
    cloud.message.post_message(name, [{"body": {"k": "v"}, "ttl": 600}])
    messages = list(cloud.message.messages(name, echo=True))
    assert [m.body for m in messages] == [{"k": "v"}]
    assert cloud.current_project_id == projects["a"]
    cloud.message.delete_queue(name)
