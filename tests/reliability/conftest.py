"""Options of the reliability tests.

``--soak`` (or TIDINGS_SOAK_SECONDS in the environment) runs the crash
history test longer: TIDINGS_SOAK_SECONDS per driver, 300 by default.
Without it each driver gets a short run (TIDINGS_HISTORY_SECONDS, 15 by
default) so the whole suite stays within two minutes.

pytest reads options only from conftest files it loads at start-up: give
the path, ``pytest --soak tests/reliability``, or use the environment
variable, which works from any invocation.

The server reads every TIDINGS_* variable as configuration and refuses an
unknown one, so the test-only variables here are read when this conftest
is imported and removed from the environment before any `tidings serve`
subprocess inherits it.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SECONDS = 15.0
DEFAULT_SOAK_SECONDS = 300.0

# Test-only knobs, taken out of the environment the servers inherit.
KNOBS = {name: os.environ.pop(name, None)
         for name in ("TIDINGS_SOAK_SECONDS", "TIDINGS_HISTORY_SECONDS", "TIDINGS_HISTORY_SEED")}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the reliability history test for TIDINGS_SOAK_SECONDS "
                          f"(default {DEFAULT_SOAK_SECONDS:.0f}) per driver")


@pytest.fixture(scope="session")
def history_seconds(request: pytest.FixtureRequest) -> float:
    """How long the crash workload runs on each driver."""
    soak = KNOBS["TIDINGS_SOAK_SECONDS"]
    if request.config.getoption("--soak", default=False) or soak:
        return float(soak or DEFAULT_SOAK_SECONDS)
    return float(KNOBS["TIDINGS_HISTORY_SECONDS"] or DEFAULT_SECONDS)


@pytest.fixture(scope="session")
def history_seed() -> int:
    """TIDINGS_HISTORY_SEED replays a run's kill schedule and batch sizes."""
    return int(KNOBS["TIDINGS_HISTORY_SEED"] or "20240917")
