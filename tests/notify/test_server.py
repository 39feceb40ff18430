"""Notifications through a real `tidings serve` process: subscriptions over
HTTP, crash safety (kill -9), fan-out without loss, and figures (printed,
not asserted): notifications per second and post-to-receipt latency."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.notify.receiver import Receiver
from tests.support.server import ServerProcess

LOCAL = {"TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32", "TIDINGS_LOG_LEVEL": "warning"}


def headers() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": f"n-{uuid.uuid4().hex[:8]}"}


def subscribe(client: httpx.Client, queue: str, url: str) -> str:
    response = client.post(f"/v2/queues/{queue}/subscriptions",
                           json={"subscriber": url, "ttl": 3600, "options": {}})
    assert response.status_code == 201, response.text
    return response.json()["subscription_id"]


@pytest.fixture
def server_factory(tmp_path: Path):
    started: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        proc = ServerProcess(storage=f"sqlite:///{tmp_path}/tidings.db",
                             env={**LOCAL, **env}, log_path=tmp_path / "server.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def test_a_post_acknowledged_before_a_crash_is_still_delivered(server_factory):
    # First run: the worker is off, so the notification is only in the
    # outbox when the server dies right after the 201.
    proc = server_factory(TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER="false").start()
    with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                              timeout=10) as client:
        subscribe(client, "crash", receiver.url)
        response = client.post("/v2/queues/crash/messages",
                               json={"messages": [{"body": {"survives": True}, "ttl": 600}]})
        assert response.status_code == 201
        mid = response.json()["resources"][0].rsplit("/", 1)[1]
        proc.kill()  # SIGKILL: no shutdown hook runs
        assert receiver.requests == []
        proc.env["TIDINGS_NOTIFICATIONS__WORKER_IN_SERVER"] = "true"
        proc.start()
        [got] = receiver.wait_for(1, timeout=10)
    assert got.json["body"] == {"survives": True}
    assert got.header("X-Tidings-Message-ID") == mid


def test_a_send_cut_short_by_a_crash_is_sent_again_after_its_lease(server_factory):
    # The receiver holds the first request open; the server dies mid-send.
    # After the restart the delivery's lease runs out and it is sent again.
    answered = []

    def status(n: int) -> int:
        if n == 0:
            time.sleep(20)  # never answered: the server is killed meanwhile
        answered.append(n)
        return 204

    proc = server_factory(TIDINGS_NOTIFICATIONS__WEBHOOK_TIMEOUT="1",
                          TIDINGS_NOTIFICATIONS__LEASE_SECONDS="3").start()
    with Receiver(status=status) as receiver, httpx.Client(
            base_url=proc.url, headers=headers(), timeout=10) as client:
        subscribe(client, "midway", receiver.url)
        client.post("/v2/queues/midway/messages", json={"messages": [{"body": 1, "ttl": 600}]})
        receiver.wait_for(1, timeout=10)
        proc.kill()
        killed = time.monotonic()
        proc.start()
        got = receiver.wait_for(2, timeout=15)
        waited = time.monotonic() - killed
    assert len(got) == 2
    assert got[0].header("X-Tidings-Delivery-ID") == got[1].header("X-Tidings-Delivery-ID")
    print(f"\nre-sent {waited:.1f}s after the crash (lease 3 s)")


async def _post_all(url: str, hdrs: dict[str, str], queue: str, count: int, per_post: int,
                    concurrency: int) -> tuple[float, float]:
    """Post ``count`` messages carrying their post time; returns the first
    and last post times."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers=hdrs, timeout=30) as client:
        async def one(start: int) -> None:
            async with gate:
                now = time.time()
                messages = [{"body": {"seq": start + i, "t": now}, "ttl": 600}
                            for i in range(per_post)]
                response = await client.post(f"/v2/queues/{queue}/messages",
                                             json={"messages": messages})
                assert response.status_code == 201, response.text

        first = time.time()
        await asyncio.gather(*(one(s) for s in range(0, count, per_post)))
        return first, time.time()


def test_fan_out_to_three_subscribers_loses_nothing(server_factory):
    count, per_post = 1000, 10
    proc = server_factory().start()
    hdrs = headers()
    receivers = [Receiver().start() for _ in range(3)]
    try:
        with httpx.Client(base_url=proc.url, headers=hdrs, timeout=10) as client:
            for r in receivers:
                subscribe(client, "fanout", r.url)
        first, last_post = asyncio.run(_post_all(proc.url, hdrs, "fanout", count, per_post, 8))
        deadline = time.monotonic() + 40
        for r in receivers:
            while (len({x.json["body"]["seq"] for x in list(r.requests)}) < count
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        report = []
        latencies: list[float] = []
        last_receipt = first
        for index, r in enumerate(receivers):
            seqs = [x.json["body"]["seq"] for x in r.requests]
            distinct = set(seqs)
            lost = count - len(distinct)
            duplicates = len(seqs) - len(distinct)
            report.append((index, len(seqs), duplicates, lost))
            latencies += [x.at - x.json["body"]["t"] for x in r.requests]
            last_receipt = max([last_receipt] + [x.at for x in r.requests])
            assert lost == 0, f"subscriber {index} lost {lost} messages"
    finally:
        for r in receivers:
            r.stop()
    latencies.sort()

    def p(q: float) -> float:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000

    total = sum(n for _, n, _, _ in report)
    print(f"\nfan-out: {count} messages x 3 subscribers; per subscriber (received, duplicates, "
          f"lost): {[r[1:] for r in report]}")
    print(f"posting took {last_post - first:.2f}s; last notification {last_receipt - first:.2f}s "
          f"after the first post: {total / (last_receipt - first):.0f} notifications/s")
    print(f"latency post->receipt: p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms")


def test_latency_below_saturation(server_factory):
    """Post-to-receipt latency when posts come slower than the worker sends
    (one message every 20 ms to one subscriber): the wake-up path."""
    count = 150
    proc = server_factory().start()
    with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                              timeout=10) as client:
        subscribe(client, "paced", receiver.url)
        for seq in range(count):
            client.post("/v2/queues/paced/messages",
                        json={"messages": [{"body": {"seq": seq, "t": time.time()}, "ttl": 600}]})
            time.sleep(0.02)
        got = receiver.wait_for(count, timeout=20)
    assert len({r.json["body"]["seq"] for r in got}) == count
    latencies = sorted(r.at - r.json["body"]["t"] for r in got)
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(int(0.99 * len(latencies)), len(latencies) - 1)] * 1000
    print(f"\npaced latency post->receipt ({count} messages, 1 subscriber): p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms")


def test_websocket_subscriber_gets_pushed_frames(server_factory):
    """A socket subscribes itself over the WebSocket API (no subscriber);
    a post over HTTP is pushed to it as one Zaqar notification frame."""
    import json

    from websockets.sync.client import connect

    proc = server_factory().start()
    hdrs = headers()
    with connect(f"ws://127.0.0.1:{proc.port}/") as ws:
        ws.send(json.dumps({"action": "subscription_create", "headers": hdrs,
                            "body": {"queue_name": "pushed", "ttl": 3600}}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["headers"]["status"] == 201, reply
        with httpx.Client(base_url=proc.url, headers=hdrs, timeout=10) as client:
            assert client.post("/v2/queues/pushed/messages", json={
                "messages": [{"body": {"hello": "socket"}, "ttl": 300}]}).status_code == 201
        frame = json.loads(ws.recv(timeout=10))
    assert frame == {"body": {"hello": "socket"}, "ttl": 300, "queue_name": "pushed",
                     "Message_Type": "Notification"}


def test_confirmation_end_to_end_through_the_webhook(server_factory):
    """The subscriber gets the confirmation request first, confirms with the
    signed URL it carries and nothing else, and only then gets messages."""
    proc = server_factory(TIDINGS_NOTIFICATIONS__SIGNING_SECRET="e2e-secret").start()
    with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                              timeout=10) as client:
        response = client.post("/v2/queues/confirmed/subscriptions", json={
            "subscriber": receiver.url, "ttl": 3600,
            "options": {"require_confirmation": True}})
        assert response.status_code == 201, response.text
        client.post("/v2/queues/confirmed/messages",
                    json={"messages": [{"body": "too early", "ttl": 600}]})
        [request] = receiver.wait_for(1, timeout=10)
        confirmation = request.json
        assert confirmation["Message_Type"] == "SubscriptionConfirmation"
        signed = {key: confirmation[key] for key in
                  ("URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths", "X-Project-ID")}
        confirm = httpx.put(confirmation["WSGISubscribeURL"], json={"confirmed": True},
                            headers={**signed, "Client-ID": str(uuid.uuid4())}, timeout=10)
        assert confirm.status_code == 204, confirm.text
        client.post("/v2/queues/confirmed/messages",
                    json={"messages": [{"body": "after confirming", "ttl": 600}]})
        received = receiver.wait_for(2, timeout=10)
    # The message posted before the confirmation was never sent; the later one was.
    assert [r.json.get("body") for r in received[1:]] == ["after confirming"]


def test_confirming_false_sends_the_unsubscribe_confirmation(server_factory):
    """Zaqar's unsubscribe flow: PUT .../confirm {"confirmed": false} stops
    the messages and sends the subscriber an UnsubscribeConfirmation whose
    signed URL takes it back with {"confirmed": true}."""
    proc = server_factory(TIDINGS_NOTIFICATIONS__SIGNING_SECRET="e2e-secret").start()

    def signed_headers(notice: dict) -> dict[str, str]:
        keys = ("URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths", "X-Project-ID")
        return {**{key: notice[key] for key in keys}, "Client-ID": str(uuid.uuid4())}

    with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                              timeout=10) as client:
        response = client.post("/v2/queues/leaving/subscriptions", json={
            "subscriber": receiver.url, "ttl": 3600,
            "options": {"require_confirmation": True}})
        assert response.status_code == 201, response.text
        subscription_id = response.json()["subscription_id"]
        [request] = receiver.wait_for(1, timeout=10)
        subscribe_notice = request.json
        assert subscribe_notice["Message_Type"] == "SubscriptionConfirmation"
        confirm = httpx.put(subscribe_notice["WSGISubscribeURL"],
                            json=subscribe_notice["SubscribeBody"],
                            headers=signed_headers(subscribe_notice), timeout=10)
        assert confirm.status_code == 204, confirm.text

        # The subscriber leaves with the UnsubscribeBody of the same notice.
        leave = httpx.put(subscribe_notice["WSGISubscribeURL"],
                          json=subscribe_notice["UnsubscribeBody"],
                          headers=signed_headers(subscribe_notice), timeout=10)
        assert leave.status_code == 204, leave.text
        [_, request] = receiver.wait_for(2, timeout=10)
        notice = request.json
        assert notice["Message_Type"] == "UnsubscribeConfirmation"
        assert notice["Message"] == (
            "You have unsubscribed successfully to the queue: leaving, "
            "you can resubscribe it by using confirmed=True.")
        assert notice["queue_name"] == "leaving"
        assert notice["subscription_id"] == subscription_id
        assert notice["SubscribeBody"] == {"confirmed": True}
        assert notice["UnsubscribeBody"] == {"confirmed": False}
        assert notice["URL-Methods"] == "PUT"
        assert notice["URL-Paths"] == f"/v2/queues/leaving/subscriptions/{subscription_id}/confirm"
        assert notice["WSGISubscribeURL"] == proc.url + notice["URL-Paths"]
        assert request.header("X-Tidings-Delivery-ID")
        shown = client.get(f"/v2/queues/leaving/subscriptions/{subscription_id}").json()
        assert shown["confirmed"] is False

        # Unsubscribed: a message posted now is not sent.
        client.post("/v2/queues/leaving/messages",
                    json={"messages": [{"body": "while away", "ttl": 600}]})
        # The notice's own signed URL takes the subscriber back.
        back = httpx.put(notice["WSGISubscribeURL"], json=notice["SubscribeBody"],
                         headers=signed_headers(notice), timeout=10)
        assert back.status_code == 204, back.text
        client.post("/v2/queues/leaving/messages",
                    json={"messages": [{"body": "welcome back", "ttl": 600}]})
        received = receiver.wait_for(3, timeout=10)
        time.sleep(0.3)  # nothing else comes: no second notice, no message from before
        received = list(receiver.requests)
    assert [r.json.get("Message_Type") for r in received] == [
        "SubscriptionConfirmation", "UnsubscribeConfirmation", "Notification"]
    assert received[2].json["body"] == "welcome back"


def test_confirming_false_without_confirmation_sends_nothing(server_factory):
    """A subscription that never needed confirming gets no unsubscribe
    notice (as in Zaqar, where it follows require_confirmation)."""
    proc = server_factory().start()
    with Receiver() as receiver, httpx.Client(base_url=proc.url, headers=headers(),
                                              timeout=10) as client:
        subscription_id = subscribe(client, "plain", receiver.url)
        response = client.put(f"/v2/queues/plain/subscriptions/{subscription_id}/confirm",
                              json={"confirmed": False})
        assert response.status_code == 204, response.text
        client.post("/v2/queues/plain/messages",
                    json={"messages": [{"body": "unsent", "ttl": 600}]})
        client.put(f"/v2/queues/plain/subscriptions/{subscription_id}/confirm",
                   json={"confirmed": True})
        client.post("/v2/queues/plain/messages",
                    json={"messages": [{"body": "sent", "ttl": 600}]})
        [got] = receiver.wait_for(1, timeout=10)
        time.sleep(0.3)
        assert len(receiver.requests) == 1
    assert got.json["Message_Type"] == "Notification"
    assert got.json["body"] == "sent"


def test_an_unresolvable_webhook_name_is_retried_then_dead_with_its_reason(server_factory):
    """Tempest subscribes http://fake:8080: accepted at creation as in Zaqar;
    at delivery the name does not resolve, which is a failed attempt,
    retried by the policy, then dead: the reason is in the deliveries
    listing and in the log (WARNING, with the subscription id)."""
    proc = server_factory(TIDINGS_LOG_LEVEL="info").start()
    quick = {"retries_with_no_delay": 2, "maximum_retries": 2}
    with httpx.Client(base_url=proc.url, headers=headers(), timeout=10) as client:
        response = client.post("/v2/queues/fake/subscriptions", json={
            "subscriber": "http://fake:8080", "options": {"_retry_policy": quick}})
        assert response.status_code == 201, response.text
        sid = response.json()["subscription_id"]
        client.post("/v2/queues/fake/messages", json={"messages": [{"body": 1, "ttl": 600}]})
        listing = f"/v2/queues/fake/subscriptions/{sid}/deliveries"
        deadline = time.monotonic() + 10
        while not (dead := client.get(listing, params={"status": "dead"}).json()["deliveries"]):
            assert time.monotonic() < deadline, client.get(listing).json()
            time.sleep(0.05)
    [delivery] = dead
    assert delivery["attempts"] == 3
    assert "cannot resolve fake" in delivery["last_error"]
    assert "gave up after 3 attempts" in delivery["last_error"]
    log = proc.log_path.read_text()
    assert log.count(f"of subscription {sid} failed") == 2
    [died] = [line for line in log.splitlines() if f"of subscription {sid}" in line
              and "is dead" in line]
    assert "WARNING" in died and "cannot resolve fake" in died
