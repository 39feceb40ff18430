"""The lock-free counters and histograms read back through the text format
as prometheus-client's own would be."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tidings.metrics.families import Counter, Histogram


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_with_and_without_labels() -> None:
    registry = CollectorRegistry()
    plain = Counter("t_posted", "Posted.", registry=registry)
    labelled = Counter("t_deleted", "Deleted.", ["via"], registry=registry)
    plain.inc()
    plain.inc(4)
    labelled.labels("bulk").inc(3)
    labelled.labels("pop").inc()
    labelled.labels("bulk").inc()
    got = samples(registry)
    assert got[("t_posted_total", ())] == 5
    assert got[("t_deleted_total", (("via", "bulk"),))] == 4
    assert got[("t_deleted_total", (("via", "pop"),))] == 1


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "Time.", ["op"], buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.labels("post").observe(value)
    got = samples(registry)
    op = (("op", "post"),)
    assert got[("t_seconds_bucket", (("le", "0.1"), *op))] == 2  # 0.05 and 0.1 (le)
    assert got[("t_seconds_bucket", (("le", "1.0"), *op))] == 4
    assert got[("t_seconds_bucket", (("le", "+Inf"), *op))] == 5
    assert got[("t_seconds_count", op)] == 5
    assert abs(got[("t_seconds_sum", op)] - 4.65) < 1e-9


def test_wrong_label_count_is_refused() -> None:
    counter = Counter("t_x", "X.", ["a", "b"], registry=CollectorRegistry())
    try:
        counter.labels("only-one")
    except ValueError:
        return
    raise AssertionError("labels() took the wrong number of values")
