"""The metrics of every worker of ``serve --workers N``, merged at scrape.

Each worker counts in its own memory (tidings.metrics.families: nothing
shared, no lock on the request path). So that a scrape reaching any one
worker reports the whole server, every worker writes a snapshot of its
counters, histograms and last queue depth sample to a file of its own
(``<pid>-<random>.worker``) in a directory the supervisor creates and
removes when it stops:

- every ``interval`` seconds (one by default) and when it stops;
- when it answers ``GET /metrics``, just before it reads the others'.

A scrape sums the counters and histograms of every file: its own worker's
counts are current, the others' lag by at most ``interval`` seconds. Each
file is replaced whole (a temporary file, then ``os.replace``) and only by
its worker, whose counts only grow; and every value a scrape shows was
first written to its worker's file. So no counter of a later scrape is
lower than in an earlier one, even when a worker is killed: what it
counted after its last snapshot was never shown.

The files of exited workers stay counted. A worker that finds some folds
them into one ``retired`` file (under a lock, so one worker at a time),
which names the files it holds: a scrape reads the workers' files first,
then ``retired``, and skips the files it names, so each is counted exactly
once even while a fold runs. The directory holds one file per running
worker and one for all the exited ones.

Queue depth gauges: each worker samples the queues it saw posts to, all in
the same storage. A scrape takes, for each queue, the most recent sample
of any running worker (exited workers' samples are dropped) and labels the
``sample_top_queues`` deepest as one process labels its own;
``tidings_queues_sampled`` counts the distinct queues,
``tidings_queue_sample_duration_seconds`` is the longest of the running
workers' last samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.exposition import generate_latest

from tidings.metrics.families import Counter, Histogram
from tidings.metrics.registry import Metrics

log = logging.getLogger(__name__)

__all__ = ["SNAPSHOT_INTERVAL", "SharedMetrics", "SnapshotWriter", "Snapshot"]

SNAPSHOT_INTERVAL = 1.0
WORKER_SUFFIX = ".worker"
RETIRED = "retired"
LOCK = "fold.lock"

class Snapshot(msgspec.Struct, kw_only=True):
    """One worker's counts (or, in ``retired``, the exited workers' summed)."""

    counters: dict[str, list[tuple[list[str], float]]] = msgspec.field(default_factory=dict)
    histograms: dict[str, list[tuple[list[str], list[int], float]]] = msgspec.field(
        default_factory=dict)
    # The last depth sample: when (Unix time), how long it took, the queues.
    sampled_at: float | None = None
    sample_seconds: float = 0.0
    depths: list[tuple[str, str, int, int, int | None]] = msgspec.field(default_factory=list)
    # retired only: the worker files folded into it.
    folded: list[str] = msgspec.field(default_factory=list)


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Snapshot)


def take_snapshot(metrics: Metrics) -> Snapshot:
    """The counts of ``metrics`` now (on the event loop: the families are
    read without a lock)."""
    from tidings.metrics.families import Counter

    snapshot = Snapshot()
    for family in metrics.families():
        if isinstance(family, Counter):
            snapshot.counters[family.name] = [(list(labels), value)
                                              for labels, value in family.state()]
        else:
            snapshot.histograms[family.name] = [(list(labels), counts, total)
                                                for labels, counts, total in family.state()]
    sample = metrics.last_sample
    if sample is not None:
        snapshot.sampled_at = sample.at
        snapshot.sample_seconds = sample.seconds
        snapshot.depths = list(sample.queues)
    return snapshot


def add_counts(into: Snapshot, snapshot: Snapshot) -> None:
    """Fold the counters and histograms of ``snapshot`` into ``into``."""
    for name, state in snapshot.counters.items():
        totals = {tuple(labels): value for labels, value in into.counters.get(name, [])}
        for labels, value in state:
            key = tuple(labels)
            totals[key] = totals.get(key, 0.0) + value
        into.counters[name] = [(list(labels), value) for labels, value in totals.items()]
    for name, hstate in snapshot.histograms.items():
        merged = {tuple(labels): (counts, total)
                  for labels, counts, total in into.histograms.get(name, [])}
        for labels, counts, total in hstate:
            key = tuple(labels)
            old = merged.get(key)
            if old is None:
                merged[key] = (list(counts), total)
            elif len(old[0]) == len(counts):
                merged[key] = ([a + b for a, b in zip(old[0], counts)], old[1] + total)
        into.histograms[name] = [(list(labels), counts, total)
                                 for labels, (counts, total) in merged.items()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _pid_of(name: str) -> int | None:
    try:
        return int(name.split("-", 1)[0])
    except ValueError:
        return None


class SharedMetrics:
    """This worker's side of the shared directory: writes its snapshot,
    folds exited workers' files, merges them all for a scrape."""

    def __init__(self, metrics: Metrics, directory: str | Path, top: int) -> None:
        self.metrics = metrics
        self.directory = Path(directory)
        self.top = max(top, 0)
        # The pid names the process (to tell exited workers); the random
        # part keeps a later process given the same pid off this file.
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}{WORKER_SUFFIX}"
        self.path = self.directory / self.name
        self._temporary = self.directory / f".{self.name}.tmp"
        metrics.merged_exposition = self.exposition

    # --- writing -----------------------------------------------------------

    def write(self) -> Snapshot:
        """Write this worker's snapshot now; returns it. Writes are
        synchronous, on the event loop: one at a time, so one temporary
        file will do, and a snapshot is a few kilobytes."""
        snapshot = take_snapshot(self.metrics)
        try:
            self._temporary.write_bytes(_encode(snapshot))
            os.replace(self._temporary, self.path)
        except OSError as exc:  # a full disk: the counts stay in memory
            log.warning("cannot write the metrics snapshot %s: %s", self.path, exc)
        return snapshot

    def fold_exited(self) -> None:
        """Fold the files of workers that exited into ``retired``."""
        exited = []
        for entry in os.scandir(self.directory):
            pid = _pid_of(entry.name)
            if (entry.name.endswith(WORKER_SUFFIX) and entry.name != self.name
                    and pid is not None and not _alive(pid)):
                exited.append(entry.name)
        if not exited:
            return
        with open(self.directory / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another worker is folding them
            retired = self._read(RETIRED) or Snapshot()
            folded = set(retired.folded)
            for name in exited:
                snapshot = None if name in folded else self._read(name)
                if snapshot is not None:
                    add_counts(retired, snapshot)
                    retired.folded.append(name)
            temporary = self.directory / f".{RETIRED}.tmp"
            temporary.write_bytes(_encode(retired))
            # The commit point: from here on a scrape skips the folded files.
            os.replace(temporary, self.directory / RETIRED)
            for name in exited:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)

    # --- reading -----------------------------------------------------------

    def _read(self, name: str) -> Snapshot | None:
        try:
            return _decoder.decode((self.directory / name).read_bytes())
        except FileNotFoundError:
            return None  # folded meanwhile: ``retired`` holds it
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("skipping the metrics snapshot %s: %s", name, exc)
            return None

    def merged(self) -> Snapshot:
        """The whole server: this worker's counts now (written first, so no
        later scrape shows less), the other workers' and the exited ones'."""
        own = self.write()
        others: dict[str, Snapshot] = {}
        # Workers' files first, then retired: see the module's docstring.
        for entry in os.scandir(self.directory):
            if entry.name.endswith(WORKER_SUFFIX) and entry.name != self.name:
                snapshot = self._read(entry.name)
                if snapshot is not None:
                    others[entry.name] = snapshot
        retired = self._read(RETIRED)
        total = Snapshot()
        add_counts(total, own)
        if retired is not None:
            add_counts(total, retired)
            for name in retired.folded:
                others.pop(name, None)
        for snapshot in others.values():
            add_counts(total, snapshot)
        # Depths: the running workers' samples, the latest for each queue.
        running = [own, *(snapshot for name, snapshot in others.items()
                          if _alive(_pid_of(name) or 0))]
        latest: dict[tuple[str, str], tuple[float, Any]] = {}
        for snapshot in running:
            at = snapshot.sampled_at
            if at is None:
                continue
            total.sampled_at = max(total.sampled_at or at, at)
            total.sample_seconds = max(total.sample_seconds, snapshot.sample_seconds)
            for depth in snapshot.depths:
                seen = latest.get((depth[0], depth[1]))
                if seen is None or seen[0] < at:
                    latest[(depth[0], depth[1])] = (at, depth)
        total.depths = [tuple(depth) for _, depth in latest.values()]
        return total

    def exposition(self) -> bytes:
        """The text format of the merged metrics, as one process writes its own."""
        total = self.merged()
        view = Metrics(self.metrics.max_queues)
        families = {family.name: family for family in view.families()}
        for name, state in total.counters.items():
            family = families.get(name)
            if isinstance(family, Counter):
                family.add_state(state)
        for name, hstate in total.histograms.items():
            family = families.get(name)
            if isinstance(family, Histogram):
                family.add_state(hstate)
        if total.sampled_at is not None:
            view.set_depths(list(total.depths), self.top)
            view.sample_duration.set(total.sample_seconds)
        return generate_latest(view.registry)


class SnapshotWriter:
    """Writes this worker's snapshot every ``interval`` seconds and when it
    stops, and folds exited workers' files. The server's lifespan starts it
    first, so it stops last, after the delivery worker counted its last
    outcomes."""

    def __init__(self, shared: SharedMetrics, interval: float = SNAPSHOT_INTERVAL) -> None:
        self.shared = shared
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.shared.write()
        self._task = asyncio.create_task(self._run(), name="metrics-snapshots")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.shared.write()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.shared.write()
                self.shared.fold_exited()
            except OSError as exc:  # the directory went away: keep serving
                log.warning("folding exited workers' metrics failed: %s", exc)
