"""Counters and histograms for the request path, read only when scraped.

prometheus-client's own ``Counter`` and ``Histogram`` take a lock on every
``inc`` and ``observe`` (they may be called from any thread); on a ping
that was several percent of the event loop's time. Everything counted
here is counted on the event loop's thread, so a plain integer or float
in a list does: the families below keep their values so, and turn them
into metric families (the same names and text format) when ``/metrics``
is scraped.

Use them only from the event loop's thread. ``state`` and ``add_state``
carry the values from one process to another (tidings.metrics.snapshots:
``serve --workers N``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One slot per finite bucket, then +Inf; not cumulative until scraped.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        # CounterChild or HistogramChild, as the family is.
        self._children: dict[tuple[str, ...], Any] = {}
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def _empty(self) -> Metric:
        raise NotImplementedError


class Counter(_Family):
    """A counter family; ``labels(...)`` gives a child to ``inc``. Without
    label names the family is its own only child."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self._unlabelled = CounterChild() if not self.labelnames else None

    def labels(self, *values: str) -> CounterChild:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}")
            child = self._children[values] = CounterChild()
        return child

    def inc(self, amount: float = 1) -> None:
        assert self._unlabelled is not None, "a labelled counter counts through labels()"
        self._unlabelled.value += amount

    def state(self) -> list[tuple[tuple[str, ...], float]]:
        """Each child's label values and count (the unlabelled one: ())."""
        values = [(labels, child.value) for labels, child in list(self._children.items())]
        if self._unlabelled is not None:
            values.insert(0, ((), self._unlabelled.value))
        return values

    def add_state(self, state: Iterable[tuple[Sequence[str], float]]) -> None:
        """Add counts taken by ``state()`` (of another process) to this family."""
        for labels, value in state:
            if labels:
                self.labels(*labels).value += value
            elif self._unlabelled is not None:
                self._unlabelled.value += value

    def _empty(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        if self._unlabelled is not None:
            family.add_metric((), self._unlabelled.value)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class Histogram(_Family):
    """A histogram family with fixed bucket bounds; ``labels(...)`` gives a
    child to ``observe``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self.bounds = tuple(sorted(float(b) for b in buckets))

    def labels(self, *values: str) -> HistogramChild:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}")
            child = self._children[values] = HistogramChild(self.bounds)
        return child

    def state(self) -> list[tuple[tuple[str, ...], list[int], float]]:
        """Each child's label values, bucket counts (not cumulative) and sum."""
        return [(labels, list(child.counts), child.sum)
                for labels, child in list(self._children.items())]

    def add_state(self, state: Iterable[tuple[Sequence[str], Sequence[int], float]]) -> None:
        """Add observations taken by ``state()`` (of another process)."""
        for labels, counts, total in state:
            child = self.labels(*labels)
            if len(counts) != len(child.counts):
                continue  # other buckets (another version): not comparable
            for i, count in enumerate(counts):
                child.counts[i] += count
            child.sum += total

    def _empty(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, child in list(self._children.items()):
            counts: list[int] = list(child.counts)
            running, buckets = 0, []
            for le, count in zip(les, counts):
                running += count
                buckets.append((le, running))
            family.add_metric(list(values), buckets, child.sum)
        yield family
