"""The parent side: start the bench processes, run the phases, merge results."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from time import perf_counter
from typing import Any

from tidings.bench import queues
from tidings.bench.options import DEFAULT_PREFILL, READING_ROLES, WRITING_ROLES, BenchOptions
from tidings.bench.process import BARRIER_TIMEOUT, END_GRACE, child_main
from tidings.bench.progress import Progress
from tidings.bench.stats import PhaseStats

# Upper bound on automatic prefill per queue, so the set-up stays short.
MAX_AUTO_PREFILL = 200_000
# Seconds between progress updates while a phase runs.
PROGRESS_EVERY = 0.25


class BenchError(RuntimeError):
    """A bench process failed or stopped answering."""


@dataclass
class BenchResult:
    options: BenchOptions
    roles: dict[str, PhaseStats] = field(default_factory=dict)
    prefilled: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def ping_rps(self) -> float | None:
        ping = self.roles.get("ping")
        return ping.per_second(ping.requests) if ping and ping.requests else None

    def bench_cpu(self) -> dict[str, Any]:
        cores = os.cpu_count() or 1
        one_core = 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "pct_of_one_core": round(one_core, 1),
            "pct_of_all_cores": round(one_core / cores, 1),
            "cores": cores,
        }


class ProcessPool:
    """N spawned bench processes, each driven phase by phase over a pipe."""

    def __init__(self, options: BenchOptions) -> None:
        # spawn, not fork: the caller may be a threaded program (pytest, the
        # server's CLI), and a forked copy of its threads' locks can deadlock.
        ctx = mp.get_context("spawn")
        self._barrier = ctx.Barrier(options.processes)
        self._pipes = []
        self._procs = []
        for index in range(options.processes):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=child_main,
                args=(index, options, child_end, self._barrier),
                name=f"tidings-bench-{index}",
                daemon=True,
            )
            self._pipes.append(parent_end)
            self._procs.append(proc)
        self._phase_timeout = options.warmup + options.time + 2 * END_GRACE + BARRIER_TIMEOUT

    def start(self) -> None:
        for proc in self._procs:
            proc.start()

    def run_phase(self, role: str, progress: Progress | None = None) -> PhaseStats:
        for pipe in self._pipes:
            pipe.send(role)
        merged = PhaseStats()
        if progress is not None:
            progress.phase(role)
        for reply in self._collect(self._phase_timeout + 30, progress):
            if "fatal" in reply:
                raise BenchError(f"{role} phase failed in a bench process:\n{reply['fatal']}")
            merged.merge(PhaseStats.from_dict(reply["stats"]))
        return merged

    def stop(self) -> float:
        """Stop every process; return their total CPU seconds (user+sys)."""
        cpu = 0.0
        try:
            for pipe in self._pipes:
                pipe.send(None)
            cpu = sum(reply.get("cpu_seconds", 0.0) for reply in self._collect(10))
        except (BenchError, OSError):
            pass  # the processes are cut below either way
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        return cpu

    def _collect(self, timeout: float, progress: Progress | None = None
                 ) -> list[dict[str, Any]]:
        """One reply from every process, failing fast if one dies; the
        progress is brought up to date at least every second meanwhile."""
        deadline = time.monotonic() + timeout
        replies: dict[int, dict[str, Any]] = {}
        while len(replies) < len(self._pipes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("bench processes stopped answering")
            ready = wait(self._pipes + [p.sentinel for p in self._procs],
                         min(remaining, PROGRESS_EVERY))
            if progress is not None:
                progress.tick()
            for i, pipe in enumerate(self._pipes):
                if i not in replies and pipe in ready:
                    replies[i] = pipe.recv()
            for i, proc in enumerate(self._procs):
                if i not in replies and proc.sentinel in ready and not self._pipes[i].poll():
                    raise BenchError(f"bench process {proc.name} exited ({proc.exitcode})")
        return [replies[i] for i in sorted(replies)]


def prefill_size(options: BenchOptions, done: dict[str, PhaseStats]) -> int:
    """Messages to post per queue before the first reading phase.

    Explicit --prefill wins. Otherwise aim for what consumers could possibly
    drain: no role outruns the ping ceiling, so ping requests/s times the
    phase length is enough; without a ceiling use a fixed figure. Whatever
    the producer phase already posted counts towards it.
    """
    if options.prefill is not None:
        return options.prefill
    ping = done.get("ping")
    if ping and ping.requests:
        want = ping.per_second(ping.requests) * (options.time + options.warmup) / options.queues
        want = min(want, MAX_AUTO_PREFILL)
    else:
        want = DEFAULT_PREFILL
    posted = sum(done[r].messages for r in WRITING_ROLES if r in done) / options.queues
    return max(0, math.ceil(want - posted))


def run_bench(options: BenchOptions, progress: Progress | None = None) -> BenchResult:
    """Run every requested phase in order and return the merged figures;
    ``progress`` hears of each phase as it runs."""
    began, cpu_began = perf_counter(), time.process_time()
    result = BenchResult(options)
    queues.create_queues(options)
    pool = ProcessPool(options)
    children_cpu = 0.0
    filled = False  # prefill once, before the first phase that reads
    try:
        pool.start()
        for role in options.roles:
            if role in READING_ROLES and not filled:
                size = prefill_size(options, result.roles)
                if progress is not None:
                    progress.say(f"posting {size} messages to each of {options.queues} "
                                 f"queue(s) for the readers")
                result.prefilled = queues.prefill(options, size, 60 + 5 * options.time)
                filled = True
            result.roles[role] = pool.run_phase(role, progress)
    finally:
        if progress is not None:
            progress.finish()
        children_cpu = pool.stop()
        if not options.keep_queues:
            queues.delete_queues(options)
    result.cpu_seconds = children_cpu + time.process_time() - cpu_began
    result.wall_seconds = perf_counter() - began
    return result
