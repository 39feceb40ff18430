"""Fixtures for the web console: a real headless Chromium driven by
Selenium, and real servers for it to talk to.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``;
scripts/test.sh installs them). Selenium is pointed at both binaries, so its
own driver manager never runs (it would try to download a browser). Under
CI=true a missing browser fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth.conftest import auth_env, start_server
from tests.support.keystone import KeystoneServer
from tests.support.server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of the runs (git-ignored); docs/console.png is the one kept.
ARTIFACTS = ROOT / "test-artifacts" / "console"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.webdriver import WebDriver
except ImportError:  # pragma: no cover - reported by the browser fixture
    webdriver = None  # type: ignore[assignment]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the console tests need a browser under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    if webdriver is None:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"missing {', '.join(missing)} (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1440,960", "--hide-scrollbars",
                     "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


# Screenshots taken this run, listed at the end of the run's report.
SCREENSHOTS: list[Path] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in SCREENSHOTS:
        terminalreporter.write_line(f"console screenshot: {path}")


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose delivery worker may reach 127.0.0.1, so a subscription
    to a closed loopback port fails for real and its deliveries die."""
    base = tmp_path_factory.mktemp("console-server")
    proc = start_server(base, {"TIDINGS_NOTIFICATIONS__ALLOWED_NETWORKS": "127.0.0.1/32",
                               "TIDINGS_NOTIFICATIONS__POLL_INTERVAL": "0.2"})
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def ks_console_server(tmp_path_factory: pytest.TempPathFactory, keystone: KeystoneServer,
                      ) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("ks-console-server")
    proc = start_server(base, auth_env(keystone))
    yield proc
    proc.stop()


@pytest.fixture
def project() -> str:
    return f"console-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def http(console_server: ServerProcess, project: str) -> Iterator[httpx.Client]:
    """Another client of the same project: what it does, the console must see."""
    with httpx.Client(base_url=console_server.url, timeout=10, headers={
            "X-Project-ID": project, "Client-ID": str(uuid.uuid4())}) as client:
        yield client
