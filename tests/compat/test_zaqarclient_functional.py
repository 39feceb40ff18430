"""python-zaqarclient's own functional tests against the default server
(noauth, SQLite, default settings), as its tox environment runs them.

Thirteen of its 36 tests fail against Zaqar 23 as well, for reasons in the
tests themselves (tests/support/openstack_suites.py names each one, and
docs/compatibility.md explains them); every other test must pass. A
failure names each failing test with its exception."""

from __future__ import annotations

import pytest

from tests.support.openstack_suites import (
    CLIENT_FLOOR,
    CLIENT_TESTS_TOTAL,
    SuiteResult,
    client_report,
    unexpected_client_failures,
)


def test_the_suite_ran_every_test(zaqarclient_results: SuiteResult) -> None:
    assert len(zaqarclient_results.outcomes) == CLIENT_TESTS_TOTAL, zaqarclient_results.summary()


def test_only_tests_failing_against_zaqar_fail(zaqarclient_results: SuiteResult) -> None:
    unexpected = unexpected_client_failures(zaqarclient_results)
    if unexpected:
        pytest.fail(zaqarclient_results.report(unexpected), pytrace=False)


def test_at_least_the_floor_passes(zaqarclient_results: SuiteResult) -> None:
    if zaqarclient_results.passed < CLIENT_FLOOR:
        pytest.fail(f"fewer than {CLIENT_FLOOR} passed: " + client_report(zaqarclient_results),
                    pytrace=False)
