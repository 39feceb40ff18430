"""What a red run of OpenStack's suites shows: each failing test by name with
its exception, and the client's failures Zaqar has too told apart from the
others. Outcomes here are written by hand, in the shapes subunit gives."""

from __future__ import annotations

from tests.support.openstack_suites import (
    CLIENT_FLOOR,
    CLIENT_TESTS_TOTAL,
    TEMPEST_TESTS,
    Outcome,
    SuiteResult,
    client_report,
    exception_lines,
    expected_client_failure,
    tempest_verdict,
    unexpected_client_failures,
)

TEMPEST_TRACEBACK = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/zaqar_tempest_plugin/tests/v2/test_messages.py", line 60
    self._post_messages()
  File "/venv/lib/python3.11/site-packages/tempest/lib/common/rest_client.py", line 882
    raise exceptions.BadRequest(resp_body, resp=resp)
tempest.lib.exceptions.BadRequest: Bad request
Details: {'title': 'Invalid API request', 'description': 'no'}
"""

MISMATCH_TRACEBACK = """\
Traceback (most recent call last):
  File "zaqarclient/tests/queues/queues.py", line 536, in test_queue_metadata_functional
    self.assertEqual(expect_metadata, metadata)
testtools.matchers._impl.MismatchError: !=:
reference = {'name': 'test1'}
actual    = {'_enable_encrypt_messages': False,
 'name': 'test1'}
"""

CLIENT_PREFIX = "tests.functional.queues.v2."


def test_the_exception_is_shown_without_the_frames() -> None:
    assert exception_lines(TEMPEST_TRACEBACK) == [
        "tempest.lib.exceptions.BadRequest: Bad request",
        "Details: {'title': 'Invalid API request', 'description': 'no'}",
    ]


def test_a_message_over_several_lines_is_kept_whole() -> None:
    assert exception_lines(MISMATCH_TRACEBACK) == MISMATCH_TRACEBACK.splitlines()[3:]


def test_a_skip_reason_is_shown_as_it_is() -> None:
    assert exception_lines("Zaqar support is required") == ["Zaqar support is required"]


def test_the_report_names_each_test_that_did_not_pass() -> None:
    result = SuiteResult("tempest", (
        Outcome("zaqar_tempest_plugin.tests.v2.test_queues.TestQueues.test_ok[id-1]",
                "success", ""),
        Outcome("zaqar_tempest_plugin.tests.v2.test_messages.TestMessages.test_post[id-2,smoke]",
                "fail", TEMPEST_TRACEBACK),
        Outcome("zaqar_tempest_plugin.tests.v2.test_claims.TestClaims.test_claim[id-3]",
                "skip", "Zaqar support is required"),
    ), 1.0)
    assert (result.passed, result.failed, result.skipped) == (1, 1, 1)
    assert result.report().splitlines() == [
        "tempest: 1 passed, 1 failed, 1 skipped in 1 s",
        "- SKIP zaqar_tempest_plugin.tests.v2.test_claims.TestClaims.test_claim",
        "    Zaqar support is required",
        "- FAIL zaqar_tempest_plugin.tests.v2.test_messages.TestMessages.test_post",
        "    tempest.lib.exceptions.BadRequest: Bad request",
        "    Details: {'title': 'Invalid API request', 'description': 'no'}",
    ]


def test_client_failures_zaqar_has_too_are_told_apart() -> None:
    known = Outcome(CLIENT_PREFIX + "test_pool.QueuesV2PoolHttpFunctionalTest.test_pool_get",
                    "fail", "")
    new = Outcome(CLIENT_PREFIX + "test_queues.QueuesV2QueueHttpFunctionalTest.test_signed_url",
                  "fail", "zaqarclient.transport.errors.ServiceUnavailableError: 503")
    result = SuiteResult("client", (known, new), 1.0)
    assert "mongodb" in (expected_client_failure(known) or "")
    assert expected_client_failure(new) is None
    assert unexpected_client_failures(result) == [new]
    report = client_report(result)
    assert report.index("test_signed_url") < report.index("Zaqar 23 too") < report.index(
        "test_pool_get: registers a pool")


def test_the_floor_is_every_test_zaqar_passes() -> None:
    assert (CLIENT_TESTS_TOTAL, CLIENT_FLOOR) == (36, 23)


def test_tempest_passes_only_when_every_test_passes() -> None:
    def run(*statuses: str) -> SuiteResult:
        return SuiteResult("tempest", tuple(
            Outcome(f"zaqar_tempest_plugin.t{i}", status, "") for i, status in enumerate(statuses)
        ), 1.0)

    assert tempest_verdict(run(*["success"] * TEMPEST_TESTS))[0]
    assert not tempest_verdict(run(*["success"] * (TEMPEST_TESTS - 1), "skip"))[0]
    assert not tempest_verdict(run(*["success"] * (TEMPEST_TESTS - 1)))[0]
