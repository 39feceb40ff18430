"""The console page as the tests use it: fill a field, press a button, and
wait (with a deadline, never a fixed pause) for what the page shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import SCREENSHOTS

TIMEOUT = 15.0
DEPTH_COLUMNS = ("total", "free", "claimed")


class ConsolePage:
    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self) -> ConsolePage:
        self.driver.get(self.base_url + "/console")
        # The page remembers the last project per origin: start from nothing.
        self.driver.execute_script("window.localStorage.clear()")
        self.driver.get(self.base_url + "/console")
        self.wait_for(lambda: self.status() == "Not connected", "the page to load")
        return self

    def until(self, condition: Callable[[WebDriver], Any], what: str,
              timeout: float = TIMEOUT) -> Any:
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,
                                                 NoSuchElementException))
        try:
            return wait.until(condition)
        except TimeoutException:
            # Read the page only now: reading it while a dialog is open
            # would dismiss the dialog.
            raise TimeoutException(f"waited {timeout}s for {what}; status: "
                                   f"{self._status_or_none()!r}, log: {self._log_or_none()!r}"
                                   ) from None

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        return self.until(lambda _: check(), what, timeout)

    def element(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def fill(self, element_id: str, text: str) -> None:
        field = self.element(f"#{element_id}")
        field.clear()
        field.send_keys(text)

    def click(self, element_id: str) -> None:
        self.element(f"#{element_id}").click()

    # --- what the page shows ------------------------------------------------------

    def status(self) -> str:
        return self.element("#status").text

    def _status_or_none(self) -> str | None:
        try:
            return self.status()
        except Exception:  # noqa: BLE001 - only for the timeout message
            return None

    def log(self) -> str:
        return self.element("#log").text

    def _log_or_none(self) -> str | None:
        try:
            return self.log()
        except Exception:  # noqa: BLE001 - only for the timeout message
            return None

    def queue_names(self) -> list[str]:
        rows = self.driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr")
        return [row.get_attribute("data-queue") for row in rows]

    def depth(self, queue: str) -> dict[str, int] | None:
        """total, free, claimed of the queue's row; None while it has none."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, f'#queues tr[data-queue="{queue}"]')
        if not rows:
            return None
        return {column: int(rows[0].find_element(By.CSS_SELECTOR, f"td.{column}").text)
                for column in DEPTH_COLUMNS}

    def oldest(self, queue: str) -> str:
        return self.element(f'#queues tr[data-queue="{queue}"] td.oldest').text

    def wait_for_depth(self, queue: str, **expected: int) -> dict[str, int]:
        def matches() -> dict[str, int] | None:
            depth = self.depth(queue)
            if depth is not None and all(depth[k] == v for k, v in expected.items()):
                return depth
            return None
        return self.wait_for(matches, f"{queue} to show {expected}")

    def message_rows(self) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#messages tbody tr")

    def subscription_rows(self) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#subscriptions tbody tr")

    def error_beside(self, element_id: str) -> str:
        """The error shown beside an action (empty when hidden)."""
        element = self.element(f"#{element_id}")
        return element.text if element.is_displayed() else ""

    def wait_for_error_beside(self, element_id: str, text: str) -> None:
        self.wait_for(lambda: text in self.error_beside(element_id),
                      f"#{element_id} to say {text!r}")

    def shows(self, element_id: str) -> bool:
        return bool(self.element(f"#{element_id}").is_displayed())

    def wait_for_log(self, text: str) -> None:
        self.wait_for(lambda: text in self.log(), f"the log to say {text!r}")

    # --- what the user does ---------------------------------------------------------

    def connect(self, project: str = "", token: str = "") -> None:
        self.fill("project", project)
        self.fill("token", token)
        self.click("connect")

    def wait_live(self) -> None:
        self.wait_for(lambda: self.status().startswith("Live"), "the console to be live")

    def select(self, queue: str) -> None:
        def click() -> bool:
            self.element(f'#queues tr[data-queue="{queue}"]').click()
            return True
        self.wait_for(click, f"{queue}'s row to take a click")
        self.wait_for(lambda: self.element("#queue-name").get_attribute("value") == queue,
                      f"{queue} to be selected")

    def post(self, queue: str, body: str, ttl: int) -> None:
        self.fill("queue-name", queue)
        self.fill("post-body", body)
        self.fill("post-ttl", str(ttl))
        self.click("post")

    def peek(self, count: int) -> list[Any]:
        """Press Peek and wait until the table shows ``count`` messages."""
        self.click("peek")
        self.wait_for(lambda: len(self.message_rows()) == count,
                      f"the peek to show {count} messages")
        return self.message_rows()

    def purge(self) -> None:
        self.click("purge")
        alert = self.until(expected_conditions.alert_is_present(), "the purge confirmation")
        alert.accept()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        SCREENSHOTS.append(path)
        return path
