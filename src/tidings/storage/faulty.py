"""A DataDriver wrapper that injects faults and latency, for reliability tests.

It wraps any driver of the registry and fails chosen operations with a
configured probability, from a seeded RNG so a run can be replayed::

    faulty+sqlite:///data/t.db?error_rate=0.2&latency_ms=5&ops=messages.post,claims.create&seed=1
    faulty+redis://127.0.0.1:6390/0?prefix=t:&error_rate=0.1&mode=after

The options the wrapper takes are removed from the URL; the rest (scheme
without ``faulty+``, path and other options) opens the inner driver.

Options:

- ``error_rate``: probability (0..1) that a chosen operation fails.
  Default 0.
- ``latency_ms``: extra latency before every chosen operation, in
  milliseconds; ``latency_ms=2-20`` draws it uniformly from that range.
  Default 0.
- ``ops``: comma-separated ``controller.method`` names (``messages.post``,
  ``claims.create``, ``queues.*``, ``*``). Default: every write
  (``WRITE_OPS``).
- ``mode``: when an injected failure happens relative to the inner call.
  ``before`` (default): the inner driver is never called, nothing is
  written. ``after``: the inner call completes (its write is committed),
  then the caller gets the failure anyway: a lost acknowledgement, what a
  crash or a network cut between commit and reply looks like to the
  client. ``mixed``: either, at random.
- ``error``: what is raised. ``unavailable`` (default):
  errors.ServiceUnavailable, which is what every real driver turns its
  backend failures into (so the API answers 503). ``timeout``: the
  operation hangs for ``hang_ms`` (default 1000) and then raises
  ServiceUnavailable, like a backend that stops answering.
- ``seed``: the RNG seed (default 0). Each process draws from its own
  RNG, so with ``--workers N`` every worker replays the same sequence.

Lifecycle calls (open, close, is_alive, health, gc, watch) are never
faulted: the server must start and report health for the tests to talk
to it. ``injected`` counts the faults by operation (see ``health``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tidings import errors
from tidings.storage.base import (
    CONTROLLERS,
    DataDriver,
    GcResult,
    PostWatch,
    Receive,
    SchemaStatus,
    interface_methods,
)
from tidings.storage.wrapping import Method, wrap_controllers

SCHEME_PREFIX = "faulty+"
# Every operation that changes stored state.
WRITE_OPS = (
    "queues.create", "queues.set_metadata", "queues.delete", "queues.purge_messages",
    "messages.post", "messages.delete", "messages.bulk_delete", "messages.pop",
    "claims.create", "claims.update", "claims.delete",
    "subscriptions.create", "subscriptions.update", "subscriptions.confirm",
    "subscriptions.delete",
    "deliveries.enqueue", "deliveries.lease", "deliveries.delivered", "deliveries.retry",
    "deliveries.dead",
)
MODES = ("before", "after", "mixed")
ERRORS = ("unavailable", "timeout")
OPTIONS = ("error_rate", "latency_ms", "ops", "mode", "error", "seed", "hang_ms")


def known_ops() -> list[str]:
    """Every ``controller.method`` of the driver interface."""
    return [f"{name}.{method}" for name in CONTROLLERS for method in interface_methods(name)]


class InjectedFault(errors.ServiceUnavailable):
    """The failure the wrapper raises: a 503 to the client, like any
    backend failure a driver reports."""


@dataclass(kw_only=True)
class FaultPlan:
    """What to inject, where, and the RNG that decides when."""

    error_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    ops: tuple[str, ...] = WRITE_OPS
    mode: str = "before"
    error: str = "unavailable"
    seed: int = 0
    hang_ms: float = 1000.0
    rng: random.Random = field(init=False)
    injected: Counter[str] = field(init=False, default_factory=Counter)
    calls: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, not {self.error_rate}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.error not in ERRORS:
            raise ValueError(f"error must be one of {', '.join(ERRORS)}, not {self.error!r}")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError(f"bad latency range {self.latency_ms}")
        for pattern in self.ops:
            if not any(fnmatch.fnmatchcase(op, pattern) for op in known_ops()):
                raise ValueError(f"{pattern!r} names no operation: use controller.method, "
                                 f"e.g. messages.post, claims.*, with a controller among "
                                 f"{', '.join(CONTROLLERS)}")
        self.rng = random.Random(self.seed)

    @classmethod
    def from_options(cls, options: dict[str, str]) -> FaultPlan:
        kwargs: dict[str, Any] = {}
        if "error_rate" in options:
            kwargs["error_rate"] = float(options["error_rate"])
        if "latency_ms" in options:
            low, _, high = options["latency_ms"].partition("-")
            kwargs["latency_ms"] = (float(low), float(high or low))
        if "ops" in options:
            kwargs["ops"] = tuple(op.strip() for op in options["ops"].split(",") if op.strip())
        for name in ("mode", "error"):
            if name in options:
                kwargs[name] = options[name]
        if "seed" in options:
            kwargs["seed"] = int(options["seed"])
        if "hang_ms" in options:
            kwargs["hang_ms"] = float(options["hang_ms"])
        return cls(**kwargs)

    def covers(self, op: str) -> bool:
        return any(fnmatch.fnmatchcase(op, pattern) for pattern in self.ops)

    def latency(self) -> float:
        low, high = self.latency_ms
        return (low if low == high else self.rng.uniform(low, high)) / 1000.0

    def decide(self) -> str | None:
        """None (no fault), "before" or "after"."""
        if self.error_rate <= 0 or self.rng.random() >= self.error_rate:
            return None
        if self.mode == "mixed":
            return self.rng.choice(("before", "after"))
        return self.mode


class FaultyDriver(DataDriver):
    """Wraps ``inner``; see the module docstring."""

    def __init__(self, inner: DataDriver, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        # The API and health report the inner driver's name and abilities.
        self.name = inner.name
        self.capabilities = inner.capabilities
        wrap_controllers(self, inner, self._faulty)

    @classmethod
    def from_url(cls, url: str, *, open_inner: Callable[[str], DataDriver]) -> FaultyDriver:
        """``faulty+<inner url>?fail=...``: the plan from the query, the
        inner driver opened by ``open_inner`` (the registry's)."""
        inner_url, plan = split_url(url)
        return cls(open_inner(inner_url), plan)

    async def stored_secret(self, name: str) -> bytes:
        return await self.inner.stored_secret(name)

    async def migrate(self) -> int:
        return await self.inner.migrate()

    async def schema_status(self) -> SchemaStatus:
        return await self.inner.schema_status()

    @property  # the inner driver's: its open() is the one that migrates
    def migrate_on_open(self) -> bool:
        return self.inner.migrate_on_open

    @migrate_on_open.setter
    def migrate_on_open(self, value: bool) -> None:
        self.inner.migrate_on_open = value

    def __getattr__(self, attr: str) -> Any:
        # Driver-specific extras (clock, path, ...) stay reachable.
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def _faulty(self, op: str, method: Method) -> Method:
        """``method`` through ``_call`` while the plan covers ``op`` (asked
        at each call: a test may change the plan)."""

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            if not self.plan.covers(op):
                return await method(*args, **kwargs)
            return await self._call(op, method, args, kwargs)

        faulty.__name__ = method.__name__
        return faulty

    async def _call(self, op: str, method: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        plan = self.plan
        plan.calls[op] += 1
        delay = plan.latency()
        if delay:
            await asyncio.sleep(delay)
        when = plan.decide()
        if when == "before":
            await self._fail(op, when)
        result = await method(*args, **kwargs)
        if when == "after":
            await self._fail(op, when)
        return result

    async def _fail(self, op: str, when: str) -> None:
        self.plan.injected[f"{op}:{when}"] += 1
        if self.plan.error == "timeout":
            await asyncio.sleep(self.plan.hang_ms / 1000.0)
            raise InjectedFault(f"The storage did not answer in time ({op}, injected fault).")
        raise InjectedFault(f"The storage failed ({op}, injected fault {when} the call).")

    # --- life cycle: never faulted ------------------------------------------

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def is_alive(self) -> bool:
        return await self.inner.is_alive()

    def problem(self) -> str | None:
        return self.inner.problem()

    async def health(self) -> dict[str, Any]:
        details = dict(await self.inner.health())
        details["faults"] = {
            "error_rate": self.plan.error_rate, "mode": self.plan.mode,
            "ops": list(self.plan.ops), "seed": self.plan.seed,
            "injected": dict(self.plan.injected),
        }
        return details

    async def gc(self) -> GcResult:
        return await self.inner.gc()

    def watch(self, project: str, queue: str) -> AbstractAsyncContextManager[PostWatch]:
        return self.inner.watch(project, queue)

    async def publish(self, channel: str, message: bytes) -> int | None:
        return await self.inner.publish(channel, message)

    def listen(self, channel: str, receive: Receive) -> AbstractAsyncContextManager[None]:
        return self.inner.listen(channel, receive)


def split_url(url: str) -> tuple[str, FaultPlan]:
    """The inner driver's URL and the fault plan of a ``faulty+...`` URL."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(SCHEME_PREFIX):
        raise ValueError(f"not a faulty+ URL: {url!r}")
    inner_scheme = parts.scheme[len(SCHEME_PREFIX):]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in OPTIONS}
    rest = [(k, v) for k, v in pairs if k not in OPTIONS]
    query = urlencode(rest, safe=":/,@")
    inner = urlunsplit((inner_scheme, parts.netloc, parts.path, query, parts.fragment))
    # urlunsplit drops the empty netloc of sqlite:///rel; keep the slashes.
    if not parts.netloc and url[len(parts.scheme) + 1:].startswith("//"):
        inner = f"{inner_scheme}://{parts.path}" + (f"?{query}" if query else "")
    return inner, FaultPlan.from_options(ours)
