"""The delivery worker against real SQLite storage and real receivers.

Subscriptions are made through the storage interface (the HTTP API has its
own tests); messages are posted through the storage too, which writes the
outbox in the same transaction.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.notify.receiver import Receiver
from tests.notify.smtp import SmtpServer
from tidings.config import NotificationSettings, SmtpSettings
from tidings.notify import Notifier
from tidings.notify.sockets import SocketRegistry
from tidings.storage.base import DataDriver, DeliveryStatus, NewMessage, NewSubscription
from tidings.storage.registry import driver_from_url

PROJECT = "p"
CLIENT = str(uuid.uuid4())
# Retries a few milliseconds apart: 3 retries, then dead.
QUICK = {"retries_with_no_delay": 0, "minimum_delay_retries": 3, "minimum_delay": 0.02,
         "maximum_delay": 0.02, "maximum_delay_retries": 0}


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[DataDriver]:
    driver = driver_from_url(f"sqlite:///{tmp_path}/notify.db", sync="normal")
    await driver.open()
    yield driver
    await driver.close()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def settings(**changes: Any) -> NotificationSettings:
    base: dict[str, Any] = {"allowed_networks": ["127.0.0.1/32"], "poll_interval": 0.2,
                            "webhook_timeout": 2.0}
    return NotificationSettings(**{**base, **changes})


@pytest.fixture
async def running(storage):
    """Start a worker on the storage; stopped at the end of the test."""
    workers: list[Notifier] = []

    def start(**kwargs: Any) -> Notifier:
        worker = Notifier(storage, kwargs.pop("settings", None) or settings(), **kwargs)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.stop()


async def subscribe(storage: DataDriver, queue: str, subscriber: str,
                    options: dict[str, Any] | None = None) -> str:
    sid = await storage.subscriptions.create(
        PROJECT, queue, NewSubscription(subscriber=subscriber, ttl=3600, options=options or {}))
    assert sid is not None
    return sid


async def post(storage: DataDriver, queue: str, *bodies: Any) -> list[str]:
    return await storage.messages.post(PROJECT, queue, [NewMessage(body=b, ttl=300)
                                                        for b in bodies], CLIENT)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def dead(storage: DataDriver, queue: str) -> list:
    return await storage.deliveries.list(PROJECT, queue, status=DeliveryStatus.DEAD,
                                         marker=None, limit=100)


async def test_posted_messages_reach_the_webhook(storage, receiver, running):
    await subscribe(storage, "orders", receiver.url)
    ids = await post(storage, "orders", {"n": 1}, {"n": 2}, "three")
    worker = running()
    got = await asyncio.to_thread(receiver.wait_for, 3)
    assert sorted(r.header("X-Tidings-Message-ID") for r in got) == sorted(ids)
    assert len({r.header("X-Tidings-Delivery-ID") for r in got}) == 3
    assert sorted((r.json["body"] for r in got), key=str) == sorted([{"n": 1}, {"n": 2}, "three"],
                                                                    key=str)
    for r in got:
        assert r.json["queue_name"] == "orders"
        assert r.json["Message_Type"] == "Notification"
        assert r.json["ttl"] == 300
    await eventually(lambda: worker.stats["delivered"] == 3)
    # The outbox is empty: nothing to lease, nothing dead.
    assert await storage.deliveries.lease(limit=10, lease_seconds=1) == []
    assert await dead(storage, "orders") == []


async def test_a_post_wakes_an_idle_worker_at_once(storage, receiver, running):
    await subscribe(storage, "orders", receiver.url)
    worker = running(settings=settings(poll_interval=30.0))
    await asyncio.sleep(0.5)  # idle: the poll has backed off far past this test
    started = time.monotonic()
    await post(storage, "orders", {"n": 1})
    worker.wake()  # what the API's notifier stage does after a post
    await asyncio.to_thread(receiver.wait_for, 1, 5.0)
    assert receiver.requests, "the worker did not wake"
    assert time.monotonic() - started < 1.0


async def test_a_receiver_that_recovers_gets_the_message(storage, running):
    with Receiver(status=lambda n: 503 if n < 3 else 204) as flaky:
        await subscribe(storage, "orders", flaky.url, {"_retry_policy": QUICK})
        [mid] = await post(storage, "orders", {"n": 1})
        worker = running()
        got = await asyncio.to_thread(flaky.wait_for, 4)
        await eventually(lambda: worker.stats["delivered"] == 1)
    assert len(got) == 4
    assert {r.header("X-Tidings-Message-ID") for r in got} == {mid}
    assert len({r.header("X-Tidings-Delivery-ID") for r in got}) == 1  # the same delivery
    assert worker.stats["retried"] == 3
    assert await dead(storage, "orders") == []


async def test_a_receiver_that_never_recovers_ends_dead(storage, running):
    with Receiver(status=lambda n: 500) as broken:
        sid = await subscribe(storage, "orders", broken.url, {"_retry_policy": QUICK})
        await post(storage, "orders", {"n": 1})
        worker = running()
        [gone] = await eventually(lambda: dead(storage, "orders"))
        assert len(broken.requests) == 4  # the first attempt and 3 retries
    assert gone.subscription_id == sid
    assert gone.attempts == 4
    assert "HTTP 500" in gone.last_error and "gave up after 4 attempts" in gone.last_error
    assert worker.stats["dead"] == 1


async def test_the_queue_retry_policy_applies_and_can_override(storage, running):
    await storage.queues.create(PROJECT, "orders", {"_retry_policy": {
        **QUICK, "minimum_delay_retries": 1, "ignore_subscription_override": True}})
    with Receiver(status=lambda n: 500) as broken:
        await subscribe(storage, "orders", broken.url, {"_retry_policy": QUICK})
        await post(storage, "orders", {"n": 1})
        running()
        [gone] = await eventually(lambda: dead(storage, "orders"))
    assert gone.attempts == 2  # the queue's one retry, not the subscription's three


async def test_an_address_refused_at_send_time_is_dead_at_once(storage, receiver, running):
    # The subscription was accepted (say the name resolved elsewhere then);
    # at send time the address is refused: no request, no retry.
    await subscribe(storage, "orders", receiver.url, {"_retry_policy": QUICK})
    await post(storage, "orders", {"n": 1})
    worker = running(settings=settings(allowed_networks=[]))
    [gone] = await eventually(lambda: dead(storage, "orders"))
    assert gone.attempts == 1
    assert "refused" in gone.last_error and "127.0.0.1" in gone.last_error
    assert receiver.requests == []
    assert worker.stats["retried"] == 0


@pytest.mark.parametrize("host", ["localhost", "no-such-host.invalid"])
async def test_a_name_refused_or_unresolved_at_send_time_is_retried_then_dead(
        storage, receiver, running, caplog, host):
    """Names are judged at send time only (the API accepts them, as Zaqar
    does): one resolving to refused addresses only (localhost, through the
    hosts file; loopback is not allowed here) or not at all is a failed
    attempt, retried by the policy, then dead with its reason, logged."""
    url = receiver.url.replace("127.0.0.1", host)
    sid = await subscribe(storage, "orders", url, {"_retry_policy": QUICK})
    await post(storage, "orders", {"n": 1})
    caplog.set_level("INFO", logger="tidings.notify.worker")
    worker = running(settings=settings(allowed_networks=[]))
    [gone] = await eventually(lambda: dead(storage, "orders"))
    assert gone.attempts == 4 and worker.stats["retried"] == 3
    reason = "refused" if host == "localhost" else "cannot resolve"
    assert reason in gone.last_error and "gave up after 4 attempts" in gone.last_error
    assert receiver.requests == []
    failed = [r for r in caplog.records if r.levelname == "INFO" and "failed" in r.message]
    assert len(failed) == 3 and all(sid in r.message for r in failed)
    # The worker logs once the storage has the delivery dead: the test can
    # see it dead a moment before the line is written.
    [died] = await eventually(lambda: [
        r for r in caplog.records if r.levelname == "WARNING" and "dead" in r.message])
    assert sid in died.message and reason in died.message


async def test_metadata_service_address_is_dead(storage, running):
    await subscribe(storage, "orders", "http://169.254.169.254/latest/meta-data/")
    await post(storage, "orders", {"n": 1})
    running()
    [gone] = await eventually(lambda: dead(storage, "orders"))
    assert "169.254.169.254/32" in gone.last_error and "metadata" in gone.last_error


async def test_mailto_reaches_the_smtp_server(storage, running):
    smtp = SmtpServer().start()
    try:
        await subscribe(storage, "orders", "mailto:ops@example.com?subject=New%20order",
                        {"from": "queues@example.com"})
        [mid] = await post(storage, "orders", {"order": 7})
        running(settings=settings(smtp=SmtpSettings(host="127.0.0.1", port=smtp.port)))
        [mail] = await asyncio.to_thread(smtp.wait_for, 1)
    finally:
        smtp.stop()
    assert mail.recipients == ["ops@example.com"]
    assert mail.message["Subject"] == "New order"
    assert mail.message["From"] == "queues@example.com"
    assert mail.message["X-Tidings-Message-ID"] == mid
    assert '"order": 7' in mail.message.get_content()


async def test_socket_subscriber_in_this_process_gets_a_frame(storage, running):
    registry = SocketRegistry()
    frames: list[dict] = []

    async def send(frame: dict) -> None:
        frames.append(frame)

    registry.register("sock-1", send)
    await subscribe(storage, "orders", "websocket:sock-1")
    await post(storage, "orders", {"n": 1})
    running(registry=registry)
    await eventually(lambda: frames)
    assert frames == [{"body": {"n": 1}, "ttl": 300, "queue_name": "orders",
                       "Message_Type": "Notification"}]


async def test_socket_held_elsewhere_is_retried_not_lost(storage, running):
    registry = SocketRegistry()
    frames: list[dict] = []
    await subscribe(storage, "orders", "websocket:sock-2")
    await post(storage, "orders", {"n": 1})
    worker = running(registry=registry, settings=settings(socket_retry_delay=0.05))
    await eventually(lambda: worker.stats["retried"] >= 2)  # not here: tried again

    async def send(frame: dict) -> None:
        frames.append(frame)

    registry.register("sock-2", send)  # now this process holds it
    await eventually(lambda: frames)
    assert await dead(storage, "orders") == []


async def test_encrypted_bodies_are_decrypted_before_sending(storage, receiver, running):
    crypto = pytest.importorskip("tidings.crypto")
    key = bytes(range(32))
    await subscribe(storage, "secret", receiver.url)
    await post(storage, "secret", crypto.encrypt_body({"card": "4111"}, key))
    running(decrypt=lambda body: crypto.decrypt_body(body, key))
    [got] = await asyncio.to_thread(receiver.wait_for, 1)
    assert got.json["body"] == {"card": "4111"}


async def test_stop_leaves_unfinished_sends_to_their_lease(storage, running):
    # A receiver that holds the request: the worker is stopped mid-send; the
    # delivery is not recorded and comes back once its lease runs out.
    release = asyncio.Event()

    async def hold(reader, writer):
        await reader.read(65536)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await subscribe(storage, "orders", f"http://127.0.0.1:{port}/slow")
        await post(storage, "orders", {"n": 1})
        worker = Notifier(storage, settings())
        worker.start()
        await eventually(lambda: worker.in_flight == 1)
        await worker.stop(grace=0.1)
        assert worker.stats["delivered"] == worker.stats["retried"] == worker.stats["dead"] == 0
        # Still leased: nothing to lease now, nothing dead.
        assert await storage.deliveries.lease(limit=10, lease_seconds=1) == []
        assert await dead(storage, "orders") == []
    finally:
        release.set()
        server.close()


@pytest.fixture
async def slow_recording(tmp_path: Path) -> AsyncIterator[DataDriver]:
    """SQLite whose `delivered` takes a second, like a storage slow to commit."""
    driver = driver_from_url(f"faulty+sqlite:///{tmp_path}/slow.db?latency_ms=1000"
                             "&ops=deliveries.delivered", sync="normal")
    await driver.open()
    yield driver
    await driver.close()


async def test_sends_go_on_while_outcomes_are_being_written(slow_recording, receiver):
    await subscribe(slow_recording, "orders", receiver.url)
    await post(slow_recording, "orders", *range(6))
    worker = Notifier(slow_recording, settings(max_in_flight=2))
    worker.start()
    try:
        await eventually(lambda: len(receiver.requests) == 6)
        # Two send slots, and all six were sent before one outcome was written.
        assert worker.stats["delivered"] == 0
        await eventually(lambda: worker.stats["delivered"] == 6)
    finally:
        await worker.stop()


async def test_outcomes_waiting_to_be_written_are_bounded(slow_recording, receiver):
    from tidings.notify.worker import RECORDING_PER_SEND

    await subscribe(slow_recording, "orders", receiver.url)
    await post(slow_recording, "orders", *range(10))
    worker = Notifier(slow_recording, settings(max_in_flight=1))
    worker.start()
    bound = 1 + RECORDING_PER_SEND
    try:
        async def within_bound() -> bool:
            assert len(receiver.requests) - worker.stats["delivered"] <= bound
            assert worker.in_flight <= bound
            return worker.stats["delivered"] == 10
        await eventually(within_bound, timeout=20)
    finally:
        await worker.stop()
    assert len(receiver.requests) == 10
