"""tempest's Zaqar plugin (zaqar-tempest-plugin on tempest) against Tidings
with Keystone auth and tempest's dynamic credentials: every test passes, as
against Zaqar itself. A failure names each failing tempest test with its
exception."""

from __future__ import annotations

import pytest

from tests.support.openstack_suites import TEMPEST_TESTS, SuiteResult, tempest_verdict


def test_the_plugin_ran_every_test(tempest_results: SuiteResult) -> None:
    assert len(tempest_results.outcomes) == TEMPEST_TESTS, tempest_results.summary()


def test_every_tempest_test_passes(tempest_results: SuiteResult) -> None:
    passed, report = tempest_verdict(tempest_results)
    if not passed:
        pytest.fail(report, pytrace=False)
