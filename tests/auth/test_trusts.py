"""trust+http(s) subscribers under Keystone auth, as Zaqar has them: the
subscribing user's trust to the service user, and a trust token with every
notification. Real Keystone, real Tidings, real receivers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.auth.conftest import auth_env, start_server
from tests.notify.receiver import Receiver
from tests.support.keystone import KeystoneServer
from tests.support.server import ServerProcess

Make = Callable[..., httpx.Client]


@pytest.fixture(scope="module")
def trust_server(tmp_path_factory: pytest.TempPathFactory, keystone: KeystoneServer
                 ) -> Iterator[ServerProcess]:
    """Keystone auth, the delivery worker on, webhooks to loopback allowed
    (the receivers, and Tidings itself, are on 127.0.0.1)."""
    base = tmp_path_factory.mktemp("trust-server")
    proc = start_server(base, auth_env(
        keystone, TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS="127.0.0.1/32"))
    yield proc
    proc.stop()


def wait_for(read: Callable[[], list], what: str) -> list:
    deadline = time.monotonic() + 15
    while not (found := read()):
        assert time.monotonic() < deadline, f"no {what} arrived"
        time.sleep(0.1)
    return found


def test_trust_subscription_posts_as_the_user(trust_server: ServerProcess, as_user: Make,
                                              queue: str, projects: dict) -> None:
    """Tempest's test_trust_subscription, step by step: the notification is
    posted back into Tidings (another queue) with a trust token, post_data
    and post_headers."""
    member = as_user("a-member", server=trust_server)
    target = f"{queue}-sub"
    subscriber = f"trust+{trust_server.url}/v2/queues/{target}/messages"
    post_data = json.dumps({"messages": [{"body": "$zaqar_message$", "ttl": 60}]})
    post_headers = {"X-Project-ID": projects["a"], "Client-ID": str(uuid.uuid4())}
    created = member.post(f"/v2/queues/{queue}/subscriptions", json={
        "ttl": 1200, "subscriber": subscriber,
        "options": {"post_data": post_data, "post_headers": post_headers}})
    assert created.status_code == 201, created.text
    sid = created.json()["subscription_id"]
    options = member.get(f"/v2/queues/{queue}/subscriptions/{sid}").json()["options"]
    assert options["trust_id"] and options["post_data"] == post_data  # as Zaqar keeps it

    message = {"body": {"event": "BackupStarted"}, "ttl": 300}
    assert member.post(f"/v2/queues/{queue}/messages",
                       json={"messages": [message]}).status_code == 201
    arrived = wait_for(lambda: member.get(f"/v2/queues/{target}/messages").json()["messages"],
                       "notification")
    assert [m["body"] for m in arrived] == [
        {**message, "queue_name": queue, "Message_Type": "Notification"}]


def test_the_receiver_gets_a_token_of_the_trust(trust_server: ServerProcess, as_user: Make,
                                                keystone: KeystoneServer, queue: str,
                                                projects: dict) -> None:
    member = as_user("a-member", server=trust_server)
    with Receiver() as receiver:
        created = member.post(f"/v2/queues/{queue}/subscriptions", json={
            "subscriber": "trust+" + receiver.url,
            "options": {"post_data": '{"wrapped": "$zaqar_message$"}',
                        "post_headers": {"X-Custom": "yes", "X-Auth-Token": "forged"}}})
        assert created.status_code == 201, created.text
        sid = created.json()["subscription_id"]
        trust_id = member.get(f"/v2/queues/{queue}/subscriptions/{sid}"
                              ).json()["options"]["trust_id"]
        member.post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": 7}]})
        [got] = receiver.wait_for(1, timeout=15)
    assert got.path == "/hook"
    assert got.json == {"wrapped": {"body": 7, "ttl": 3600, "queue_name": queue,
                                    "Message_Type": "Notification"}}
    assert got.header("X-Custom") == "yes"
    # The token is the trust's (it wins over post_headers): Keystone says so.
    token = got.header("X-Auth-Token")
    assert token and token != "forged"
    checked = httpx.get(keystone.api + "/auth/tokens", timeout=10, headers={
        "X-Auth-Token": keystone.admin_token(), "X-Subject-Token": token}).json()["token"]
    assert checked["OS-TRUST:trust"]["id"] == trust_id
    assert checked["project"]["id"] == projects["a"]
    # Impersonation: the receiver sees the subscribing user.
    user = httpx.get(keystone.api + "/auth/tokens", timeout=10, headers={
        "X-Auth-Token": keystone.admin_token(),
        "X-Subject-Token": keystone.token("a-member")}).json()["token"]["user"]["id"]
    assert checked["user"]["id"] == user


def test_a_trust_id_in_the_request_is_never_used(trust_server: ServerProcess,
                                                 as_user: Make, queue: str) -> None:
    """A deliberate difference from Zaqar (which uses a given trust_id): it
    could name another user's trust, whose tokens would go where this
    subscriber says."""
    b_user = as_user("b-member", server=trust_server)
    theirs = b_user.post(f"/v2/queues/{queue}/subscriptions",
                         json={"subscriber": "trust+http://127.0.0.1:9/b"}).json()
    their_trust = b_user.get(f"/v2/queues/{queue}/subscriptions/"
                             f"{theirs['subscription_id']}").json()["options"]["trust_id"]
    member = as_user("a-member", server=trust_server)
    path = f"/v2/queues/{queue}/subscriptions"
    sid = member.post(path, json={"subscriber": "trust+http://127.0.0.1:9/a",
                                  "options": {"trust_id": their_trust}}).json()["subscription_id"]
    mine = member.get(f"{path}/{sid}").json()["options"]["trust_id"]
    assert mine and mine != their_trust
    # Nor through an update.
    assert member.patch(f"{path}/{sid}", json={"options": {"trust_id": their_trust}}
                        ).status_code == 204
    assert member.get(f"{path}/{sid}").json()["options"]["trust_id"] == mine
    # A new URL gets a new trust, from whoever changes it (here B, in B's
    # project): A's trust does not follow the subscription elsewhere.
    b_path = f"/v2/queues/{queue}/subscriptions/{theirs['subscription_id']}"
    assert b_user.patch(b_path, json={"subscriber": "trust+http://127.0.0.1:9/b2"}
                        ).status_code == 204
    moved = b_user.get(b_path).json()["options"]["trust_id"]
    assert moved not in (their_trust, mine)
    # A duplicate makes no trust: it answers with the first subscription.
    again = member.post(path, json={"subscriber": "trust+http://127.0.0.1:9/a"})
    assert again.json()["subscription_id"] == sid
    assert member.get(f"{path}/{sid}").json()["options"]["trust_id"] == mine


def test_a_revoked_trust_is_a_dead_delivery(trust_server: ServerProcess, as_user: Make,
                                            keystone: KeystoneServer, queue: str,
                                            tokens: dict) -> None:
    member = as_user("a-member", server=trust_server)
    created = member.post(f"/v2/queues/{queue}/subscriptions",
                          json={"subscriber": "trust+http://127.0.0.1:9/never"})
    sid = created.json()["subscription_id"]
    trust_id = member.get(f"/v2/queues/{queue}/subscriptions/{sid}").json()["options"]["trust_id"]
    # The trustor takes the trust back.
    httpx.delete(f"{keystone.api}/OS-TRUST/trusts/{trust_id}", timeout=10,
                 headers={"X-Auth-Token": tokens["a-member"]}).raise_for_status()
    member.post(f"/v2/queues/{queue}/messages", json={"messages": [{"body": 1}]})
    listing = f"/v2/queues/{queue}/subscriptions/{sid}/deliveries"
    [dead] = wait_for(lambda: member.get(listing, params={"status": "dead"}
                                         ).json()["deliveries"], "dead delivery")
    assert dead["attempts"] == 1 and trust_id in dead["last_error"]


def test_topic_subscribers_may_be_trust_subscribers(trust_server: ServerProcess,
                                                    as_user: Make, queue: str) -> None:
    member = as_user("a-member", server=trust_server)
    with Receiver() as receiver:
        created = member.post(f"/v2/topics/{queue}/subscriptions",
                              json={"subscriber": "trust+" + receiver.url})
        assert created.status_code == 201, created.text
        sid = created.json()["subscription_id"]
        assert member.get(f"/v2/topics/{queue}/subscriptions/{sid}"
                          ).json()["options"]["trust_id"]
        member.post(f"/v2/topics/{queue}/messages", json={"messages": [{"body": "t"}]})
        [got] = receiver.wait_for(1, timeout=15)
    assert got.header("X-Auth-Token") and got.json["body"] == "t"
