"""The SigV4 check Tidings makes with a cached secret (tidings.auth.ec2)
agrees with botocore's signer, from the evidence the SQS endpoint gathers
(transport/sqs/sigv4.py) — the same evidence Keystone checks."""

from __future__ import annotations

import hashlib

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tidings.auth import ec2
from tidings.transport.sqs import sigv4

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def evidence(url: str, body: bytes, sent_body: bytes | None = None,
             secret: str = SECRET) -> dict[str, object]:
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"})
    botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", secret), "sqs",
                            "eu-west-1").add_auth(request)
    request.headers["Host"] = url.split("/")[2]
    headers = {k.lower(): v for k, v in request.headers.items()}
    signature = sigv4.parse(headers["authorization"])
    path = "/" + url.split("/", 3)[3] if url.count("/") > 2 else "/"
    return sigv4.ec2_credentials(signature, "POST", path, body if sent_body is None
                                 else sent_body, lambda name: headers.get(name.lower()))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8888/",
                                 "http://127.0.0.1:8888/0123abcd/jobs"])
def test_botocore_signatures_verify(url: str) -> None:
    credentials = evidence(url, b'{"QueueUrl": "x", "MessageBody": "hello"}')
    assert credentials["body_hash"] == hashlib.sha256(
        b'{"QueueUrl": "x", "MessageBody": "hello"}').hexdigest()
    assert ec2.matches(SECRET, credentials)


def test_another_secret_or_body_does_not_verify() -> None:
    assert not ec2.matches(SECRET, evidence("http://127.0.0.1:8888/", b"{}",
                                            secret="another"))
    assert not ec2.matches(SECRET, evidence("http://127.0.0.1:8888/", b"{}", b'{"a": 1}'))
