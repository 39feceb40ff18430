"""A log-bucketed latency histogram.

Why not keep every latency: a long run at tens of thousands of requests per
second would hold (and pickle to the parent) hundreds of megabytes. Buckets
that grow by 1% give percentiles within 1% of the exact value, cost a few
kilobytes whatever the run length, and merge across processes by addition.
"""

from __future__ import annotations

import math
from typing import Any

# Bucket i holds latencies in [MIN * GROWTH**i, MIN * GROWTH**(i+1)).
_MIN_SECONDS = 1e-6
_GROWTH = 1.01
_INV_LOG_GROWTH = 1.0 / math.log(_GROWTH)


def bucket_of(seconds: float) -> int:
    if seconds <= _MIN_SECONDS:
        return 0
    return int(math.log(seconds / _MIN_SECONDS) * _INV_LOG_GROWTH)


def bucket_value(index: int) -> float:
    """The geometric middle of a bucket: its error is at most half a step."""
    return _MIN_SECONDS * _GROWTH ** (index + 0.5)


class LatencyHistogram:
    """Counts per bucket plus exact count, sum, min and max (in seconds)."""

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        index = bucket_of(seconds)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHistogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The latency below which q percent of requests fall (nearest rank)."""
        if not self.count:
            return 0.0
        if q >= 100:
            return self.max
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                # Clamping keeps the estimate inside what was really observed.
                return min(max(bucket_value(index), self.min), self.max)
        return self.max

    # Plain data for the pipe between processes and for tests.

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyHistogram:
        hist = cls()
        hist.counts = dict(data["counts"])
        hist.count = data["count"]
        hist.total = data["total"]
        hist.min = data["min"]
        hist.max = data["max"]
        return hist
