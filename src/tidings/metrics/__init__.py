"""Prometheus metrics of a server: the families (families.py), this
process's counters and the driver instrumentation (registry.py), and the
snapshots that merge the workers of ``serve --workers N`` (snapshots.py).
"""

from tidings.metrics.registry import (
    CONTENT_TYPE_LATEST,
    DepthSample,
    Metrics,
    QueueSampler,
    instrument,
)

__all__ = ["CONTENT_TYPE_LATEST", "DepthSample", "Metrics", "QueueSampler", "instrument"]
