"""SigV4 under Keystone: real EC2 credentials (as ``openstack ec2
credentials create`` makes them) against a real Keystone, which checks
each signature (``POST /v3/ec2tokens``). A wrong secret, an unknown key, an
expired date or a tampered body get SQS's 403; a project never sees
another project's queues through either API."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import botocore.auth
import botocore.config
import botocore.exceptions
import botocore.session
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.auth.conftest import auth_env, start_server
from tests.sqs.conftest import log_size, server_log_clean, sqs_client
from tests.support.keystone import KeystoneServer
from tests.support.server import ServerProcess

TARGET = "AmazonSQS.ListQueues"


@pytest.fixture(scope="module")
def ks_sqs_server(tmp_path_factory: pytest.TempPathFactory, keystone: KeystoneServer
                  ) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("ks-sqs"), auth_env(keystone))
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def no_server_tracebacks(ks_sqs_server: ServerProcess) -> Iterator[None]:
    start = log_size(ks_sqs_server)
    yield
    server_log_clean(ks_sqs_server, start)


def ec2_credentials(keystone: KeystoneServer, user: str) -> dict[str, str]:
    """A new EC2 credential of ``user`` in its project (what ``openstack ec2
    credentials create`` asks Keystone for): access, secret, tenant_id."""
    token = keystone.token(user)
    with httpx.Client(base_url=keystone.api, timeout=10,
                      headers={"X-Auth-Token": token}) as api:
        me = api.get("/auth/tokens", headers={"X-Subject-Token": token}).raise_for_status()
        user_id, project = me.json()["token"]["user"]["id"], me.json()["token"]["project"]["id"]
        created = api.post(f"/users/{user_id}/credentials/OS-EC2",
                           json={"tenant_id": project}).raise_for_status()
    return created.json()["credential"]


@pytest.fixture(scope="module")
def creds(keystone: KeystoneServer) -> dict[str, dict[str, str]]:
    return {user: ec2_credentials(keystone, user) for user in ("a-member", "b-member")}


def client(server: ServerProcess, credential: dict[str, str], secret: str | None = None
           ) -> Any:
    return sqs_client(server.url, credential["access"], secret or credential["secret"])


def test_projects_see_only_their_queues_through_both_apis(
        ks_sqs_server: ServerProcess, keystone: KeystoneServer,
        creds: dict[str, dict[str, str]]) -> None:
    a = client(ks_sqs_server, creds["a-member"])
    b = client(ks_sqs_server, creds["b-member"])
    url = a.create_queue(QueueName="private")["QueueUrl"]
    project_a = creds["a-member"]["tenant_id"]
    assert f"/{project_a}/private" in url
    a.send_message(QueueUrl=url, MessageBody="for a only")
    # Project a's Zaqar view holds the same queue and message.
    with httpx.Client(base_url=ks_sqs_server.url, timeout=10, headers={
            "X-Auth-Token": keystone.token("a-member"),
            "Client-ID": "3a1f5e0c-8f4e-4e59-9a43-6f7c1d0e2b11"}) as zaqar_a:
        names = [q["name"] for q in zaqar_a.get("/v2/queues").json()["queues"]]
        assert "private" in names
        listed = zaqar_a.get("/v2/queues/private/messages", params={"echo": "true"}).json()
        assert [m["body"] for m in listed["messages"]] == ["for a only"]
    # Project b sees nothing of it, through SQS...
    assert "QueueUrls" not in b.list_queues()
    with pytest.raises(b.exceptions.QueueDoesNotExist):
        b.get_queue_url(QueueName="private")
    with pytest.raises(b.exceptions.QueueDoesNotExist):
        b.receive_message(QueueUrl=url)
    with pytest.raises(b.exceptions.QueueDoesNotExist):
        b.get_queue_url(QueueName="private", QueueOwnerAWSAccountId=project_a)
    # ...nor through the Zaqar API.
    with httpx.Client(base_url=ks_sqs_server.url, timeout=10, headers={
            "X-Auth-Token": keystone.token("b-member"),
            "Client-ID": "3a1f5e0c-8f4e-4e59-9a43-6f7c1d0e2b12"}) as zaqar_b:
        assert "private" not in [q["name"] for q in zaqar_b.get("/v2/queues").json()["queues"]]
    # A message received with a's credential is deleted with it.
    got = a.receive_message(QueueUrl=url)["Messages"]
    a.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])


def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response


def test_wrong_secret_is_refused(ks_sqs_server: ServerProcess,
                                 creds: dict[str, dict[str, str]]) -> None:
    wrong = client(ks_sqs_server, creds["a-member"], secret="not-the-secret")
    response = refused(wrong.list_queues)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_unknown_access_key_is_refused(ks_sqs_server: ServerProcess) -> None:
    unknown = sqs_client(ks_sqs_server.url, "0" * 32, "whatever")
    response = refused(unknown.list_queues)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "InvalidClientTokenId"


def signed(server: ServerProcess, credential: dict[str, str], body: bytes,
           at: datetime.datetime | None = None) -> dict[str, str]:
    """The headers botocore's SigV4 signer gives a ListQueues with ``body``,
    signed at ``at`` (now when None)."""
    request = AWSRequest(method="POST", url=server.url + "/", data=body, headers={
        "X-Amz-Target": TARGET, "Content-Type": "application/x-amz-json-1.0"})
    signer = botocore.auth.SigV4Auth(Credentials(credential["access"], credential["secret"]),
                                     "sqs", "us-east-1")
    if at is None:
        signer.add_auth(request)
    else:
        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda *args, **kwargs: at
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return dict(request.headers.items())


def test_hand_signed_request_is_accepted(ks_sqs_server: ServerProcess,
                                         creds: dict[str, dict[str, str]]) -> None:
    """The control for the next two: the same request, untouched, passes."""
    body = json.dumps({"QueueNamePrefix": "none-such"}).encode()
    answer = httpx.post(ks_sqs_server.url + "/", content=body,
                        headers=signed(ks_sqs_server, creds["a-member"], body), timeout=10)
    assert answer.status_code == 200, answer.text


def test_expired_date_is_refused(ks_sqs_server: ServerProcess,
                                 creds: dict[str, dict[str, str]]) -> None:
    body = b"{}"
    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - \
        datetime.timedelta(minutes=20)
    answer = httpx.post(ks_sqs_server.url + "/", content=body,
                        headers=signed(ks_sqs_server, creds["a-member"], body, old), timeout=10)
    assert answer.status_code == 403
    assert answer.json()["__type"] == "com.amazonaws.sqs#SignatureDoesNotMatch"
    assert "expired" in answer.json()["message"]


def test_tampered_body_is_refused(ks_sqs_server: ServerProcess,
                                  creds: dict[str, dict[str, str]]) -> None:
    headers = signed(ks_sqs_server, creds["a-member"], b'{"QueueNamePrefix": "a"}')
    answer = httpx.post(ks_sqs_server.url + "/", content=b'{"QueueNamePrefix": "b"}',
                        headers=headers, timeout=10)
    assert answer.status_code == 403
    assert answer.json()["__type"] == "com.amazonaws.sqs#SignatureDoesNotMatch"
    assert answer.headers["x-amzn-query-error"] == "SignatureDoesNotMatch;Sender"


def test_zaqar_requests_still_need_a_token(ks_sqs_server: ServerProcess) -> None:
    """The SQS endpoint's own check does not open the Zaqar API: a Zaqar
    path without a token is still 401, whatever SQS headers it carries."""
    answer = httpx.get(ks_sqs_server.url + "/v2/queues", timeout=10, headers={
        "X-Amz-Target": TARGET, "X-Project-ID": "anyone",
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/sqs/aws4_request, "
                         "SignedHeaders=host, Signature=00"})
    assert answer.status_code == 401


def test_later_requests_are_checked_from_the_cached_secret(
        ks_sqs_server: ServerProcess, keystone: KeystoneServer) -> None:
    """After Keystone accepted a key once, its secret is kept for
    auth.keystone.cache_time and signatures are checked without Keystone:
    deleting the credential does not stop it until then (as with tokens),
    and a wrong secret is still refused."""
    credential = ec2_credentials(keystone, "b-member")
    sqs = client(ks_sqs_server, credential)
    sqs.create_queue(QueueName="cached")
    token = keystone.token("b-member")
    with httpx.Client(base_url=keystone.api, timeout=10,
                      headers={"X-Auth-Token": token}) as api:
        api.delete(f"/users/{credential['user_id']}/credentials/OS-EC2/"
                   f"{credential['access']}").raise_for_status()
    assert sqs.get_queue_url(QueueName="cached")["QueueUrl"].endswith("/cached")
    wrong = client(ks_sqs_server, credential, secret="not-the-secret")
    assert refused(wrong.list_queues)["Error"]["Code"] == "SignatureDoesNotMatch"


def test_query_protocol_signatures_are_checked_too(
        ks_sqs_server: ServerProcess, creds: dict[str, dict[str, str]]) -> None:
    """A form-encoded (query protocol) request is signed over its form body:
    Keystone and the cached-secret check accept it, and refuse it forged."""
    from tests.sqs.test_query_protocol import query_model_root

    session = botocore.session.Session()
    session.set_config_variable("data_path", str(query_model_root()))

    def query_client(secret: str) -> Any:
        return session.create_client(
            "sqs", endpoint_url=ks_sqs_server.url, region_name="us-east-1",
            aws_access_key_id=creds["a-member"]["access"], aws_secret_access_key=secret,
            config=botocore.config.Config(retries={"total_max_attempts": 1}))

    good = query_client(creds["a-member"]["secret"])
    assert good.meta.service_model.protocol == "query"
    url = good.create_queue(QueueName="old-sdk")["QueueUrl"]
    good.send_message(QueueUrl=url, MessageBody="signed form")
    assert [m["Body"] for m in good.receive_message(QueueUrl=url)["Messages"]] == [
        "signed form"]
    response = refused(query_client("not-the-secret").list_queues)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "SignatureDoesNotMatch"
