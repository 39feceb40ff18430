"""The bench worker process: runs W workers per phase on its own event loop.

The parent sends a role name down a pipe for each phase and ``None`` to
finish; the process answers with its phase counters (or a traceback). All
processes meet at a Barrier once their connections are open, so the phases
start together and the load of every process overlaps.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from time import perf_counter

from tidings.bench.http import HttpError
from tidings.bench.options import BenchOptions
from tidings.bench.roles import ROLES, Window, Worker
from tidings.bench.stats import PhaseStats

# How long past the end of the window in-flight requests may take before
# their connections are cut (and they count as transport errors).
END_GRACE = 5.0
# How long a process waits for the others at the start of a phase.
BARRIER_TIMEOUT = 60.0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed: roughly halves the client's CPU per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def child_main(
    index: int, options: BenchOptions, conn: Connection, barrier: threading.Barrier
) -> None:
    """Entry point of a bench process (the target of multiprocessing)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        while True:
            role = conn.recv()
            if role is None:
                conn.send({"cpu_seconds": time.process_time()})
                return
            try:
                stats = runner.run(run_phase(role, index, options, barrier))
                conn.send({"stats": stats.to_dict()})
            except Exception:  # report to the parent rather than die silently
                conn.send({"fatal": f"process {os.getpid()}: {traceback.format_exc()}"})


def make_workers(
    index: int, options: BenchOptions, stats: PhaseStats, window: Window
) -> list[Worker]:
    # Global worker numbers spread workers of all processes over the queues.
    first = index * options.workers
    return [
        Worker(options, options.queue_name(first + n), stats, window)
        for n in range(options.workers)
    ]


async def open_connections(workers: list[Worker]) -> None:
    """Connect before the barrier so connect time is not in the window.

    A failed connect is not fatal here: the worker retries on its first
    request and the failure is counted there.
    """
    results = await asyncio.gather(*(w.conn.connect() for w in workers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, HttpError):
            raise result


async def run_phase(
    role: str, index: int, options: BenchOptions, barrier: threading.Barrier
) -> PhaseStats:
    stats = PhaseStats(processes=1)
    # The real window is only known after the barrier; set it then.
    workers = make_workers(index, options, stats, Window(0.0, 0.0))
    await open_connections(workers)
    # Blocking the loop here is fine: nothing runs until every process is ready.
    barrier.wait(BARRIER_TIMEOUT)
    began, cpu_began = perf_counter(), time.process_time()
    window = Window(began + options.warmup, began + options.warmup + options.time)
    for w in workers:
        w.window = window
    await drive(role, workers, window)
    stats.duration = options.time
    stats.wall_seconds = perf_counter() - began
    stats.cpu_seconds = time.process_time() - cpu_began
    return stats


async def drive(role: str, workers: list[Worker], window: Window) -> None:
    """Run every worker's loop; cut connections that hang past the end."""
    loop_fn = ROLES[role]
    tasks = [asyncio.ensure_future(loop_fn(w)) for w in workers]
    timeout = window.end - perf_counter() + END_GRACE
    _, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
    for w in workers:
        w.conn.close()  # fails any request still waiting, so its loop ends
    if pending:
        await asyncio.wait(pending, timeout=END_GRACE)
        for task in pending:
            task.cancel()
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error  # a bug in a role loop must not be hidden
