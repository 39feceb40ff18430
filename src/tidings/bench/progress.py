"""What the bench is doing while it runs, on standard error.

A run takes several seconds a phase (warm-up and the measured window, one
phase per role, and a prefill before the first reading phase); a silent
terminal for half a minute looks hung. On a terminal one status line is
rewritten in place (a bar); otherwise (a log, a pipe) a line is written
each second, so the report on standard output stays clean either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    """Phase-by-phase progress; ``tick`` is cheap to call often."""

    def __init__(self, roles: tuple[str, ...], phase_seconds: float,
                 stream: TextIO | None = None, interactive: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.roles = roles
        self.phase_seconds = phase_seconds
        self._role = ""
        self._started = 0.0
        self._last_line = -1

    def say(self, text: str) -> None:
        """A line of its own (prefill, the end)."""
        self._end_bar()
        self.stream.write(f"tidings bench: {text}\n")
        self.stream.flush()

    def phase(self, role: str) -> None:
        self._end_bar()
        self._role = role
        self._started = self.clock()
        self._last_line = -1
        self.tick()

    def tick(self) -> None:
        if not self._role:
            return
        elapsed = min(self.clock() - self._started, self.phase_seconds)
        number = self.roles.index(self._role) + 1
        head = f"tidings bench: {self._role} (phase {number} of {len(self.roles)})"
        if self.interactive:
            done = int(BAR_WIDTH * elapsed / self.phase_seconds) if self.phase_seconds else 0
            bar = "#" * done + "." * (BAR_WIDTH - done)
            self.stream.write(f"\r{head} [{bar}] {elapsed:4.1f}/{self.phase_seconds:g} s")
            self.stream.flush()
            return
        second = int(elapsed)
        if second != self._last_line:
            self._last_line = second
            self.stream.write(f"{head}: {second}/{self.phase_seconds:g} s\n")
            self.stream.flush()

    def finish(self) -> None:
        self._end_bar()
        self._role = ""

    def _end_bar(self) -> None:
        if self.interactive and self._role:
            self.stream.write("\n")
            self.stream.flush()
