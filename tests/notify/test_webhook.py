"""The webhook sender against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from tests.notify.helpers import delivery
from tests.notify.receiver import Receiver
from tests.support.ports import free_port
from tidings.notify.addresses import AddressPolicy
from tidings.notify.payload import PermanentFailure, SendFailed, document
from tidings.notify.webhook import WebhookSender

LOCAL = AddressPolicy(allow=["127.0.0.1/32"])


@pytest.fixture
async def sender():
    s = WebhookSender(LOCAL, timeout=2, connect_timeout=1)
    yield s
    await s.aclose()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


async def test_zaqar_payload_and_dedup_headers(sender, receiver):
    d = delivery(receiver.url + "?k=v", body={"event": "created", "n": [1, 2]})
    await sender.send(d, document(d))
    [got] = receiver.requests
    assert got.path == "/hook?k=v"
    assert got.json == {"body": {"event": "created", "n": [1, 2]}, "ttl": 300,
                        "queue_name": "orders", "Message_Type": "Notification"}
    assert got.header("X-Tidings-Delivery-ID") == d.id
    assert got.header("X-Tidings-Message-ID") == "0000000000000001"
    assert got.header("Content-Type") == "application/json"
    # Sent to the checked address, with the name the subscriber gave.
    assert got.header("Host") == f"127.0.0.1:{receiver.port}"


async def test_host_header_keeps_the_name_while_connecting_to_the_checked_address(receiver):
    sender = WebhookSender(AddressPolicy(allow=["127.0.0.0/8", "::1/128"]), timeout=2)
    try:
        d = delivery(f"http://localhost:{receiver.port}/named")
        await sender.send(d, document(d))
    finally:
        await sender.aclose()
    assert receiver.requests[0].header("Host") == f"localhost:{receiver.port}"


async def test_post_data_and_post_headers_as_in_zaqar(sender, receiver):
    d = delivery(receiver.url, options={
        "post_data": '{"wrapped": "$zaqar_message$", "source": "tidings"}',
        "post_headers": {"X-Custom": "yes", "Host": "evil.example", "X-Tidings-Delivery-ID": "x"},
    })
    await sender.send(d, document(d))
    [got] = receiver.requests
    assert got.json["wrapped"]["Message_Type"] == "Notification"
    assert got.json["source"] == "tidings"
    assert got.header("X-Custom") == "yes"
    assert got.header("Host") == f"127.0.0.1:{receiver.port}"  # reserved headers kept
    assert got.header("X-Tidings-Delivery-ID") == d.id


async def test_non_2xx_is_a_failed_attempt(sender):
    with Receiver(status=lambda n: 500) as failing:
        d = delivery(failing.url)
        with pytest.raises(SendFailed, match="HTTP 500") as info:
            await sender.send(d, document(d))
        assert not isinstance(info.value, PermanentFailure)
    with Receiver(status=lambda n: 302) as redirecting:
        with pytest.raises(SendFailed, match="HTTP 302"):
            await sender.send(d := delivery(redirecting.url), document(d))


async def test_connection_refused_is_retryable(sender):
    d = delivery(f"http://127.0.0.1:{free_port()}/gone")
    with pytest.raises(SendFailed) as info:
        await sender.send(d, document(d))
    assert not isinstance(info.value, PermanentFailure)


async def test_timeout_is_retryable():
    # A server that accepts and never answers.
    async def silent(reader, writer):
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = WebhookSender(LOCAL, timeout=0.3)
    try:
        d = delivery(f"http://127.0.0.1:{port}/slow")
        with pytest.raises(SendFailed, match="0.3s|timed out") as info:
            await sender.send(d, document(d))
        assert not isinstance(info.value, PermanentFailure)
    finally:
        await sender.aclose()
        server.close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://127.0.0.2:8080/",
    "http://10.0.0.1/",
])
async def test_refused_addresses_are_permanent(sender, url):
    d = delivery(url)
    with pytest.raises(PermanentFailure, match="refused"):
        await sender.send(d, document(d))


async def test_default_policy_refuses_the_local_receiver(receiver):
    sender = WebhookSender(AddressPolicy(), timeout=2)
    try:
        with pytest.raises(PermanentFailure, match="127.0.0.1"):
            await sender.send(d := delivery(receiver.url), document(d))
    finally:
        await sender.aclose()
    assert receiver.requests == []


async def test_names_that_resolve_to_refused_addresses_or_not_at_all_are_retryable(receiver):
    # localhost resolves (through the hosts file) to loopback, refused by
    # default: a failed attempt, not a dead one, since a name's DNS may change.
    sender = WebhookSender(AddressPolicy(), timeout=2)
    try:
        for url in (receiver.url.replace("127.0.0.1", "localhost"),
                    "http://no-such-host.invalid/x"):
            with pytest.raises(SendFailed) as info:
                await sender.send(d := delivery(url), document(d))
            assert not isinstance(info.value, PermanentFailure), info.value
    finally:
        await sender.aclose()
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "http://"])
async def test_malformed_subscribers_are_permanent(sender, url):
    with pytest.raises(PermanentFailure):
        await sender.send(d := delivery(url), document(d))
