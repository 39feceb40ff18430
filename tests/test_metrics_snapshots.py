"""Snapshots of several processes' metrics, merged: counts summed exactly,
exited processes folded into ``retired`` without a change in the totals,
and their depth samples dropped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tidings.metrics import DepthSample, Metrics
from tidings.metrics.snapshots import RETIRED, WORKER_SUFFIX, SharedMetrics

# A process that counts, writes its snapshot and exits.
CHILD = """
import sys, time
from tidings.metrics import DepthSample, Metrics
from tidings.metrics.snapshots import SharedMetrics
metrics = Metrics()
metrics.request("POST", "/v2/queues/{queue_name}/messages", 201, 0.02)
metrics.request("GET", "/v2/ping", 204, 0.001)
metrics.posted("p", "gone", 4)
metrics.deleted("pop", 2)
metrics.last_sample = DepthSample(time.time(), 0.3, [("p", "gone", 4, 0, 1)])
SharedMetrics(metrics, sys.argv[1], 20).write()
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: bytes) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def test_exited_process_counts_are_kept_and_folded_once(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], check=True, timeout=60)
    metrics = Metrics()
    shared = SharedMetrics(metrics, tmp_path, 20)
    metrics.request("POST", "/v2/queues/{queue_name}/messages", 201, 2.0)
    metrics.posted("p", "here", 1)
    metrics.last_sample = DepthSample(time.time(), 0.1, [("p", "here", 1, 0, 0)])

    before = parse(metrics.exposition())
    posts = ("tidings_http_requests_total", (("method", "POST"),
             ("route", "/v2/queues/{queue_name}/messages"), ("status", "201")))
    assert before[posts] == 2
    assert before[("tidings_http_requests_total", (("method", "GET"), ("route", "/v2/ping"),
                                                   ("status", "204")))] == 1
    assert before[("tidings_messages_posted_total", ())] == 5
    assert before[("tidings_messages_deleted_total", (("via", "pop"),))] == 2
    durations = ("tidings_http_request_duration_seconds_count",
                 (("method", "POST"), ("route", "/v2/queues/{queue_name}/messages")))
    assert before[durations] == 2
    # The child has exited: only this process's depth sample is shown.
    assert before[("tidings_queues_sampled", ())] == 1
    assert ("tidings_queue_messages", (("project", "p"), ("queue", "gone"),
                                       ("state", "free"))) not in before

    shared.fold_exited()
    names = {path.name for path in tmp_path.iterdir()}
    assert RETIRED in names
    assert [name for name in names if name.endswith(WORKER_SUFFIX)] == [shared.name]
    assert parse(metrics.exposition()) == before
    shared.fold_exited()  # nothing more to fold: the totals stay
    assert parse(metrics.exposition()) == before
