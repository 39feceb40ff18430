"""The web console against a server with auth=keystone and a real Keystone:
the page loads without a token, the socket works only once authenticated
with one, and the HTTP calls carry it too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.page import ConsolePage
from tests.support.server import ServerProcess


@pytest.fixture
def page(browser: WebDriver, ks_console_server: ServerProcess) -> ConsolePage:
    return ConsolePage(browser, ks_console_server.url).open()


@pytest.fixture
def as_member(ks_console_server: ServerProcess, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ks_console_server.url, timeout=10, headers={
            "X-Auth-Token": tokens["a-member"], "Client-ID": str(uuid.uuid4())}) as client:
        yield client


def test_with_a_token_the_console_lists_the_projects_queues(
        page: ConsolePage, as_member: httpx.Client, tokens: dict[str, str]) -> None:
    queue = f"ks-{uuid.uuid4().hex[:8]}"
    created = as_member.post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"ttl": 600, "body": {"n": 1}}]})
    assert created.status_code == 201, created.text
    subscribed = as_member.post(f"/v2/queues/{queue}/subscriptions", json={
        "subscriber": "mailto:ops@example.com", "ttl": 3600})
    assert subscribed.status_code == 201, subscribed.text

    page.connect(token=tokens["a-member"])
    page.wait_live()
    page.wait_for_depth(queue, total=1)
    page.post(queue, '{"n": 2}', ttl=600)
    page.wait_for_depth(queue, total=2)
    # Deliveries come over HTTP: the page sends X-Auth-Token there too.
    page.select(queue)
    page.wait_for(lambda: any(row.text.startswith("mailto:ops@example.com")
                              for row in page.subscription_rows()), "the subscription")
    assert "401" not in page.log()

    # Another project's token sees none of it.
    page.connect(token=tokens["b-member"])
    page.wait_live()
    page.wait_for(lambda: queue not in page.queue_names(), "the other project's view")


def test_without_a_token_the_socket_is_refused(page: ConsolePage, projects: dict) -> None:
    page.connect(project=projects["a"])
    page.wait_for(lambda: "Not authentified" in page.status(), "the refusal")
    assert "error" in page.element("#status").get_attribute("class")
    assert page.queue_names() == []


def test_a_bad_token_is_refused(page: ConsolePage) -> None:
    page.connect(token="not-a-token")
    page.wait_for(lambda: "Authentication failed" in page.status(), "the refusal")
    assert page.queue_names() == []
