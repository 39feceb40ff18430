"""The web console in a real headless Chromium against a real server: what
a user does in the page reaches the server, and what other clients do shows
up in the page while it is open."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.conftest import ROOT
from tests.console.page import ConsolePage
from tests.support.ports import free_port
from tests.support.server import ServerProcess

DOCS_SCREENSHOT = ROOT / "docs" / "console.png"


@pytest.fixture
def page(browser: WebDriver, console_server: ServerProcess) -> ConsolePage:
    return ConsolePage(browser, console_server.url).open()


def stats(http: httpx.Client, queue: str) -> dict:
    response = http.get(f"/v2/queues/{queue}/stats")
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def post(http: httpx.Client, queue: str, *bodies: dict) -> None:
    response = http.post(f"/v2/queues/{queue}/messages",
                         json={"messages": [{"ttl": 600, "body": b} for b in bodies]})
    assert response.status_code == 201, response.text


def test_post_see_live_depth_peek_and_purge(page: ConsolePage, http: httpx.Client,
                                            project: str, artifacts: Path) -> None:
    page.connect(project)
    page.wait_live()
    assert page.element("#no-queues").is_displayed()
    assert page.queue_names() == []

    page.post("orders", '{"order": 1, "item": "tea"}', ttl=300)
    page.wait_for_depth("orders", total=1, free=1, claimed=0)
    page.wait_for_log("posted")
    assert stats(http, "orders")["total"] == 1  # the console's post is real

    # Another client posts and claims: the open page follows, unprompted.
    post(http, "orders", {"order": 2, "item": "milk"}, {"order": 3, "item": "bread"})
    page.wait_for_depth("orders", total=3, free=3, claimed=0)
    claim = http.post("/v2/queues/orders/claims?limit=1", json={"ttl": 300, "grace": 60})
    assert claim.status_code == 201, claim.text
    page.wait_for_depth("orders", total=3, free=2, claimed=1)
    assert page.oldest("orders").endswith(" s")
    post(http, "invoices", {"invoice": 7})
    post(http, "emails", {"to": "ops@example.com"}, {"to": "dev@example.com"})
    page.wait_for(lambda: page.queue_names() == ["emails", "invoices", "orders"],
                  "every queue to be listed")

    page.select("orders")
    rows = page.peek(3)
    bodies = [json.loads(row.find_element("css selector", "td.body").text) for row in rows]
    assert bodies == [{"order": 1, "item": "tea"}, {"order": 2, "item": "milk"},
                      {"order": 3, "item": "bread"}]
    claimed = [row for row in rows if "claimed" in (row.get_attribute("class") or "")]
    assert len(claimed) == 1

    shot = page.screenshot(artifacts / "console-queues.png")
    assert shot.stat().st_size > 10_000
    if not DOCS_SCREENSHOT.exists():  # the docs keep one; delete it to take a new one
        page.screenshot(DOCS_SCREENSHOT)

    page.purge()
    page.wait_for_depth("orders", total=0, free=0, claimed=0)
    page.wait_for(lambda: not page.message_rows(), "the peek to empty")
    assert page.oldest("orders") == "–"
    assert stats(http, "orders")["total"] == 0
    # Only the messages went: the other queues are as they were.
    assert page.depth("emails") == {"total": 2, "free": 2, "claimed": 0}


def test_a_post_the_server_refuses_is_reported_beside_it(page: ConsolePage,
                                                          project: str) -> None:
    page.connect(project)
    page.wait_live()
    page.post("orders", '{"n": 1}', ttl=5)  # below the minimum message TTL
    page.wait_for_error_beside("post-error", "400")
    page.wait_for_log("400")
    page.post("orders", "{not json", ttl=300)
    page.wait_for_error_beside("post-error", "not JSON")
    assert page.queue_names() == []
    # Beside the post only: the other cards show no error.
    assert page.error_beside("messages-error") == ""
    page.post("orders", '{"n": 1}', ttl=300)
    page.wait_for_depth("orders", total=1)
    page.wait_for(lambda: page.error_beside("post-error") == "", "the error to clear")


def test_an_empty_project_gets_a_prompt(page: ConsolePage) -> None:
    page.connect("")
    page.wait_for_error_beside("connect-error", "Enter a project")
    assert "400" not in page.status() and "Schema" not in page.status()
    assert "Schema validation" not in page.error_beside("connect-error")


def test_subscriptions_show_failing_and_dead_deliveries(page: ConsolePage, http: httpx.Client,
                                                         project: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: refused
    gives_up = http.post("/v2/queues/orders/subscriptions", json={
        "subscriber": closed, "ttl": 3600,
        "options": {"_retry_policy": {"maximum_retries": 0}}})
    assert gives_up.status_code == 201, gives_up.text
    keeps_trying = http.post("/v2/queues/orders/subscriptions", json={
        "subscriber": closed + "?again", "ttl": 3600,
        "options": {"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay_retries": 3,
                                      "minimum_delay": 600, "maximum_delay": 600}}})
    assert keeps_trying.status_code == 201, keeps_trying.text
    post(http, "orders", {"n": 1})
    dead_id = gives_up.json()["subscription_id"]
    failing_id = keeps_trying.json()["subscription_id"]
    deliveries = f"/v2/queues/orders/subscriptions/{dead_id}/deliveries?status=dead"

    def delivered_once() -> bool:
        # Both subscriptions have had their first (failed) attempt.
        dead = http.get(deliveries).json()["deliveries"]
        pending = http.get(deliveries.replace(dead_id, failing_id).replace("dead", "pending"))
        return bool(dead) and any(d["attempts"] for d in pending.json()["deliveries"])

    page.connect(project)
    page.wait_live()
    page.wait_for(delivered_once, "the worker to fail both deliveries")
    page.select("orders")

    def row(subscription_id: str) -> list[str]:
        found = page.element(f'#subscriptions tr[data-subscription="{subscription_id}"]')
        return [td.text for td in found.find_elements("css selector", "td")]

    page.wait_for(lambda: len(page.subscription_rows()) >= 2, "the subscriptions")
    subscriber, confirmed, pending, dead, error = row(dead_id)
    assert (subscriber, confirmed, pending, dead) == (closed, "yes", "0 (0 failing)", "1")
    assert error  # why it died, as the worker recorded it
    subscriber, _, pending, dead, error = row(failing_id)
    assert (subscriber, pending, dead) == (closed + "?again", "1 (1 failing)", "0")
    assert error
    details = [r.text for r in page.subscription_rows()
               if "delivery" in (r.get_attribute("class") or "")]
    assert any(d.startswith("↳ dead") and '{"n":1}' in d for d in details)
    assert any(d.startswith("↳ pending") for d in details)


def test_redrive_from_a_dead_letter_queue(page: ConsolePage, http: httpx.Client,
                                          project: str) -> None:
    post(http, "orders-dlq", {"n": 1}, {"n": 2}, {"n": 3})
    page.connect(project)
    page.wait_live()
    page.wait_for_depth("orders-dlq", total=3)
    page.select("orders-dlq")
    # No queue names it as its dead letter queue yet: no Redrive card.
    assert not page.shows("redrive-form")
    named = http.put("/v2/queues/orders", json={"_dead_letter_queue": "orders-dlq",
                                                "_max_claim_count": 3})
    assert named.status_code == 201, named.text
    page.wait_for(lambda: page.shows("redrive-form"), "the Redrive card")
    assert "dead letter queue of orders" in page.element("#redrive-sources").text
    page.select("orders")  # the source itself is no dead letter queue
    page.wait_for(lambda: not page.shows("redrive-form"), "the card to go")
    page.select("orders-dlq")
    page.wait_for(lambda: page.shows("redrive-form"), "the Redrive card")
    page.fill("redrive-limit", "2")  # no "To": back to the queue that names it
    page.click("redrive")
    page.wait_for_log("redrove 2 messages from orders-dlq to orders")
    page.wait_for_depth("orders", total=2)
    page.wait_for_depth("orders-dlq", total=1)
    moved = http.get("/v2/queues/orders/messages", params={"echo": "true"}).json()["messages"]
    assert [m["body"] for m in moved] == [{"n": 1}, {"n": 2}]

    page.fill("redrive-to", "orders-dlq")  # onto itself: the API says no
    page.fill("redrive-limit", "")
    page.click("redrive")
    page.wait_for_error_beside("redrive-error", "cannot be redriven to itself")


def test_projects_stay_apart(page: ConsolePage, http: httpx.Client) -> None:
    post(http, "private", {"secret": True})
    page.connect(f"other-{uuid.uuid4().hex[:8]}")
    page.wait_live()
    page.wait_for(lambda: page.element("#no-queues").is_displayed(), "the empty list")
    assert page.queue_names() == []
