"""What one phase measured: collected per process, merged in the parent."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tidings.bench.histogram import LatencyHistogram

# The error key for failures below HTTP: refused, reset, malformed, timed out.
TRANSPORT_ERROR = "transport"


@dataclass
class PhaseStats:
    """Counters for one role in one process (or, once merged, in all)."""

    requests: int = 0
    messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    # Seconds of the measured window, summed over processes: each process
    # measures its own window, so rates are added per process, not pooled.
    duration: float = 0.0
    processes: int = 0
    cpu_seconds: float = 0.0  # user+sys of the bench processes in this phase
    wall_seconds: float = 0.0  # longest phase wall time among processes

    def record(self, seconds: float, status: int, ok: bool) -> None:
        self.requests += 1
        self.latency.record(seconds)
        if not ok:
            self.errors[str(status)] += 1

    def record_transport_error(self) -> None:
        self.errors[TRANSPORT_ERROR] += 1

    def merge(self, other: PhaseStats) -> None:
        self.requests += other.requests
        self.messages += other.messages
        self.errors.update(other.errors)
        self.counters.update(other.counters)
        self.latency.merge(other.latency)
        self.duration += other.duration
        self.processes += other.processes
        self.cpu_seconds += other.cpu_seconds
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "messages": self.messages,
            "errors": dict(self.errors),
            "counters": dict(self.counters),
            "latency": self.latency.to_dict(),
            "duration": self.duration,
            "processes": self.processes,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseStats:
        return cls(
            requests=data["requests"],
            messages=data["messages"],
            errors=Counter(data["errors"]),
            counters=Counter(data["counters"]),
            latency=LatencyHistogram.from_dict(data["latency"]),
            duration=data["duration"],
            processes=data["processes"],
            cpu_seconds=data["cpu_seconds"],
            wall_seconds=data["wall_seconds"],
        )

    def per_second(self, count: int) -> float:
        # Every process ran for the same window, so the mean window is the
        # phase length; dividing by it adds up the processes' rates.
        if not self.processes or self.duration <= 0:
            return 0.0
        return count / (self.duration / self.processes)

    def summary(self, ping_rps: float | None) -> dict[str, Any]:
        """The figures the report shows, latencies in milliseconds."""
        rps = self.per_second(self.requests)
        ms = 1000.0
        return {
            "requests": self.requests,
            "requests_per_s": round(rps, 1),
            "messages": self.messages,
            "messages_per_s": round(self.per_second(self.messages), 1),
            "latency_ms": {
                "mean": round(self.latency.mean() * ms, 3),
                "p50": round(self.latency.percentile(50) * ms, 3),
                "p90": round(self.latency.percentile(90) * ms, 3),
                "p99": round(self.latency.percentile(99) * ms, 3),
                "max": round(self.latency.max * ms, 3),
            },
            "errors": sum(self.errors.values()),
            "errors_by_status": dict(sorted(self.errors.items())),
            "fraction_of_ping": round(rps / ping_rps, 3) if ping_rps else None,
            "bench_cpu_pct": round(self.cpu_pct(), 1),
            "duration_s": round(self.duration / max(self.processes, 1), 3),
            **dict(sorted(self.counters.items())),
        }

    def cpu_pct(self) -> float:
        """Bench CPU during the phase, as a percentage of one core."""
        if self.wall_seconds <= 0:
            return 0.0
        return 100.0 * self.cpu_seconds / self.wall_seconds
