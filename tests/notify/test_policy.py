"""The retry policy: Zaqar's phases and back-off functions, as pure functions."""

from __future__ import annotations

import pytest

from tidings.notify.policy import (
    BACKOFF_FUNCTIONS,
    RetryPolicy,
    backoff_delays,
    effective_policy,
    validate_retry_policy,
)

SERVER = RetryPolicy()


def test_zaqar_defaults_make_zaqars_schedule():
    # 3 immediate, 3 at minimum_delay, linear 5..25 step 5, 3 at maximum_delay.
    assert SERVER.schedule() == [0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]
    assert SERVER.total_retries == 14


def test_delay_after_each_failure_then_dead():
    policy = RetryPolicy(retries_with_no_delay=1, minimum_delay_retries=1, minimum_delay=2,
                         maximum_delay=2, maximum_delay_retries=1)
    assert [policy.delay_after(n) for n in range(1, 5)] == [0, 2, 2, None]


def test_maximum_retries_caps_the_schedule():
    policy = RetryPolicy(maximum_retries=4)
    assert policy.schedule() == [0, 0, 0, 5]
    assert policy.delay_after(4) == 5
    assert policy.delay_after(5) is None
    assert RetryPolicy(maximum_retries=0).delay_after(1) is None


@pytest.mark.parametrize("function", BACKOFF_FUNCTIONS)
def test_backoff_functions_run_from_minimum_towards_maximum(function):
    delays = backoff_delays(function, 5, 30, 5)
    assert len(delays) == 5
    assert delays[0] == 5
    assert delays == sorted(delays)
    assert all(5 <= d <= 30 for d in delays)
    if function != "linear":
        assert delays[-1] == pytest.approx(30)


def test_backoff_shapes():
    assert backoff_delays("linear", 5, 30, 5) == [5, 10, 15, 20, 25]
    arithmetic = backoff_delays("arithmetic", 5, 30, 5)
    gaps = [b - a for a, b in zip(arithmetic, arithmetic[1:])]
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]  # growing steps
    geometric = backoff_delays("geometric", 5, 30, 5)
    ratios = [b / a for a, b in zip(geometric, geometric[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # constant ratio
    assert backoff_delays("exponential", 5, 30, 5) == pytest.approx(geometric)


@pytest.mark.parametrize("function", BACKOFF_FUNCTIONS)
def test_backoff_edge_cases_where_zaqar_divides_by_zero(function):
    assert backoff_delays(function, 5, 5, 5) == []  # empty range
    assert backoff_delays(function, 5, 12, 5) == [5]  # one step
    assert backoff_delays(function, 0.01, 0.05, 5) == []  # range under one interval
    assert backoff_delays(function, 1, 2, 0) == []  # no interval
    zero_start = backoff_delays(function, 0, 20, 5)
    assert len(zero_start) == 4 and all(d >= 0 for d in zero_start)


def test_small_float_delays_for_quick_policies():
    policy = RetryPolicy(retries_with_no_delay=0, minimum_delay_retries=2, minimum_delay=0.01,
                         maximum_delay=0.04, maximum_delay_retries=1, backoff_interval=0.01,
                         retry_backoff_function="geometric")
    schedule = policy.schedule()
    assert schedule[:2] == [0.01, 0.01]
    assert schedule[-1] == pytest.approx(0.04)
    assert len(schedule) == 2 + 3 + 1


def test_backoff_step_count_is_bounded():
    assert len(backoff_delays("linear", 0, 1e9, 0.001)) == 1000


def test_subscription_policy_wins_by_default():
    policy = effective_policy(SERVER, {"minimum_delay": 7}, {"minimum_delay": 9})
    assert policy.minimum_delay == 9
    # Keys the chosen policy leaves out come from the server's defaults, not
    # from the other policy (Zaqar uses one dict or the other).
    assert policy.maximum_delay == SERVER.maximum_delay


def test_queue_policy_applies_without_a_subscription_policy():
    assert effective_policy(SERVER, {"minimum_delay": 7}, None).minimum_delay == 7
    assert effective_policy(SERVER, {"minimum_delay": 7}, {}).minimum_delay == 7
    assert effective_policy(SERVER, None, None) == SERVER


def test_ignore_subscription_override():
    queue = {"minimum_delay": 7, "ignore_subscription_override": True}
    assert effective_policy(SERVER, queue, {"minimum_delay": 9}).minimum_delay == 7
    # Zaqar honours the flag on the subscription's own policy too.
    sub = {"minimum_delay": 9, "ignore_subscription_override": True}
    assert effective_policy(SERVER, {"minimum_delay": 7}, sub).minimum_delay == 7
    server = RetryPolicy(ignore_subscription_override=True, minimum_delay=3)
    assert effective_policy(server, None, {"minimum_delay": 9}).minimum_delay == 3


def test_invalid_stored_values_fall_back_to_defaults():
    policy = effective_policy(SERVER, None, {"minimum_delay": "soon", "maximum_retries": -1,
                                             "retry_backoff_function": "cubic",
                                             "retries_with_no_delay": True})
    assert policy == SERVER
    # A minimum above the maximum raises the maximum rather than failing.
    assert effective_policy(SERVER, None, {"minimum_delay": 60}).maximum_delay == 60


@pytest.mark.parametrize("value", [
    {"minimum_delay": 1, "maximum_delay": 10, "retry_backoff_function": "exponential",
     "ignore_subscription_override": False, "maximum_retries": 5},
    {}, {"unknown": "kept"},
])
def test_validate_accepts(value):
    validate_retry_policy(value)


@pytest.mark.parametrize("value", [
    [], "x", {"minimum_delay": -1}, {"maximum_retries": 1.5}, {"retries_with_no_delay": True},
    {"retry_backoff_function": "cubic"}, {"ignore_subscription_override": "yes"},
    {"minimum_delay": 10, "maximum_delay": 5},
])
def test_validate_refuses(value):
    with pytest.raises(ValueError):
        validate_retry_policy(value)
